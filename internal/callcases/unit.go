package callcases

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// Kit binds the cases to one adapter's tests: how they open the database
// and a fresh table, insert a row through the call's transaction, and
// make an error that ends a call with a code.
type Kit struct {
	OpenDB func(t testing.TB) (*sql.DB, string)
	Insert func(ctx context.Context, table string, id int64) error
	Error  func(code Code, msg string) error
}

// Unit is one case's server side: the transactions to bind, the commands
// run in the handler, and the unit hooks that ran.
type Unit struct {
	Txs     *scoped.ScopedSession[*sql.Tx]
	kit     Kit
	t       testing.TB
	db      *sql.DB
	table   string
	hooks   testkit.Log
	waiting chan struct{}
}

// Unit opens the database for one case.
func (k Kit) Unit(t testing.TB) *Unit {
	t.Helper()
	db, table := k.OpenDB(t)
	return &Unit{
		Txs: scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil)),
		kit: k, t: t, db: db, table: table,
		waiting: make(chan struct{}),
	}
}

// Begin records the unit's hooks; a handler calls it before its first
// command.
func (u *Unit) Begin(ctx context.Context) {
	scoped.OnCommit(ctx, func(context.Context) { u.hooks.Add("commit") })
	scoped.OnRollback(ctx, func(context.Context) { u.hooks.Add("rollback") })
}

// Do runs one command in a handler; stop says the handler returns err.
// send is nil where the call has no stream to send on.
func (u *Unit) Do(ctx context.Context, cmd string, send func() error) (stop bool, err error) {
	name, arg, _ := strings.Cut(cmd, ":")
	switch name {
	case "insert":
		id, _ := strconv.ParseInt(arg, 10, 64)
		err = u.kit.Insert(ctx, u.table, id)
	case "commit":
		// A case may make a hand commit fail on purpose: the code and
		// rows it expects tell whether it should have.
		if err := u.Txs.Commit(ctx); err != nil {
			return true, u.kit.Error(Internal, "handler: hand commit failed: "+err.Error())
		}
	case "send":
		if send != nil {
			err = send()
		}
	case "error":
		return true, u.kit.Error(FailedPrecondition, "handler says no")
	case "panic":
		panic("boom")
	case "wait":
		close(u.waiting)
		<-ctx.Done()
		return true, nil
	}
	if err != nil {
		u.t.Errorf("handler: %s: %v", cmd, err)
		return true, err
	}
	return false, nil
}

// CancelOnWait cancels the client's call once the handler waits, so that
// a case with "wait" ends by the client's cancellation.
func (u *Unit) CancelOnWait(ctx context.Context, cancel context.CancelFunc, cmds []string) {
	if !slices.Contains(cmds, "wait") {
		return
	}
	go func() {
		select {
		case <-u.waiting:
		case <-ctx.Done():
		}
		cancel()
	}()
}

// Hooks returns the unit hooks that ran so far.
func (u *Unit) Hooks() []string { return u.hooks.List() }

// Ended is how a call ended: the code and message of serr, the error the
// server's handler chain returned, and whether the client was told OK.
type Ended struct {
	Code     Code
	Message  string
	Err      error
	ClientOK bool
}

// Check fails t unless the call ended as c says, with c's rows committed
// and c's hooks run; the caller first waits for the hooks to have run.
func (u *Unit) Check(t testing.TB, c Case, e Ended) {
	t.Helper()
	if e.Code != c.Code || !strings.Contains(e.Message, c.Text) {
		t.Errorf("server ended the call with %v, want code %d %q", e.Err, c.Code, c.Text)
	}
	if c.Code != OK && e.ClientOK {
		t.Errorf("client got OK, the server ended with %v", e.Err)
	}
	if ids := dbtest.IDs(t, u.db, u.table); !slices.Equal(ids, c.Rows) {
		t.Errorf("rows %v, want %v", ids, c.Rows)
	}
	if got := u.Hooks(); !slices.Equal(got, c.Hooks) {
		t.Errorf("hooks %q, want %q", got, c.Hooks)
	}
}

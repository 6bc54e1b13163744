package scopedsql_test

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// gatedCtx is a cancellable context whose Err, called once from
// scopedsql's begin while armed, reads its answer and then waits to be
// released before returning it: the begin goroutine preempted right after
// its check of the context, as the scheduler may do.
type gatedCtx struct {
	context.Context
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gatedCtx) Err() error {
	err := g.Context.Err()
	if err == nil && g.armed.Load() && calledFrom("/scopedsql.begin") && g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return err
}

func calledFrom(suffix string) bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, suffix) {
			return true
		}
		if !more {
			return false
		}
	}
}

// A scope holding a session
// WithoutSafetyNet and one with it: when its context is cancelled the
// safety net rolls back the second and leaves the scope open (the partial
// net). A begin that checked its context just before and asks for the
// creation bound just after must get a bound that is done, so that
// BeginTx, waiting for a pooled connection, gives up with the context's
// cause (the first version of the bound, 2d5cff3, gave one that was never
// done: the begin waited until a connection freed, here forever).
func TestBeginAfterAPartialNetIsBoundedByTheContext(t *testing.T) {
	pg := dbtest.Postgres(t)
	db1 := openDB(t, pg)
	db2 := openDB(t, pg)
	db2.SetMaxOpenConns(1)
	held, err := db2.Conn(dbtest.Ctx(t)) // the pool's only connection, busy
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			_ = held.Close()
		}
	}
	defer release()

	log := &errorLog{}
	unsafe := scoped.New(scopedsql.Tx(db1, nil), scoped.WithoutSafetyNet(), log.option())
	safe := scoped.New(scopedsql.Tx(db1, nil), log.option())
	other := scoped.New(scopedsql.Tx(db2, nil), log.option())

	inner, cancel := context.WithCancel(context.Background())
	defer cancel()
	parent := &gatedCtx{Context: inner, entered: make(chan struct{}), release: make(chan struct{})}
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()
	if _, err := unsafe.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := safe.Current(ctx); err != nil {
		t.Fatal(err)
	}

	parent.armed.Store(true)
	errc := make(chan error, 1)
	go func() { _, err := other.Current(ctx); errc <- err }()
	testkit.WaitFor(t, parent.entered, "the begin's check of its context")
	cancel()
	// The partial net has run once it rolled back safe's transaction (it
	// fires the pending bounds before it ends anything).
	testkit.Eventually(t, "the partial safety net", func() bool { return safe.Stats().RolledBack == 1 })
	close(parent.release)

	select {
	case err := <-errc:
		if err == nil {
			t.Error("a transaction was begun in a scope whose context had ended")
		}
	case <-time.After(testkit.Bound): // a hang detector, not a timing assertion
		release()
		<-errc
		t.Fatal("BeginTx still waiting for a connection long after the scope's context was cancelled: " +
			"the creation bound taken after the partial safety net fired is never done")
	}
}

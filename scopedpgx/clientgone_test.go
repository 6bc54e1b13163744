package scopedpgx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
)

// Issue 20 item 10: the client goes away while a nested unit of work
// streams rows to it. The request's context ends; the safety nets of the
// request's scope and of the child's end the savepoint and the
// transaction on their goroutine while the handler is inside or between
// rows.Next calls. A client that leaves is not an error: no teardown
// error (which the default hook logs at ERROR), no "busy" error for the
// handler (it sees its context's end or the transaction's), and no
// connection left acquired. Repeated, for the interleavings.
func TestClientGoneMidStreamInNestedUnitIsQuiet(t *testing.T) {
	const rounds = 20
	pool := newPool(t, 2)
	var mu sync.Mutex
	var hooked []error
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
		mu.Lock()
		hooked = append(hooked, err)
		mu.Unlock()
	}))
	handled := make(chan error, 1)
	h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handled <- scoped.Run(r.Context(), func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				rows, err := tx.Query(ctx, "SELECT generate_series(1, 100000000)")
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var g int64
					if err := rows.Scan(&g); err != nil {
						return err
					}
					if _, err := fmt.Fprintln(w, g); err != nil {
						return err
					}
					w.(http.Flusher).Flush()
				}
				return rows.Err()
			})
		}))
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	defer srv.Close()

	for i := range rounds {
		ctx, leave := context.WithCancel(dbtest.Ctx(t))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		leave() // mid-stream
		resp.Body.Close()
		err = <-handled
		// Its context's end, the transaction's, or its write to the
		// client that left: never a collision with the library's cleanup.
		if err == nil || errors.Is(err, errBusy) || strings.Contains(err.Error(), "conn busy") {
			t.Errorf("round %d: the nested unit returned %v, want the request's end", i, err)
		}
	}
	srv.Close() // every handler has returned
	mu.Lock()
	defer mu.Unlock()
	for _, err := range hooked {
		t.Errorf("teardown error: %v", err)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}

// A child unit of work that ends with its rows still open (the client
// left mid-stream, or rows.Close was forgotten) cannot be rolled back to
// its savepoint: the connection is busy with them. Its teardown closes
// the connection instead, quietly, and the server rolls back the whole
// transaction: the caller's later statements and its commit say so, and
// nothing is committed or left acquired.
func TestChildEndingWithRowsOpenRollsBackTheCaller(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_childrows")
	var hooked []error
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
		hooked = append(hooked, err)
	}))
	errChild := errors.New("child gives up mid-stream")
	var later error
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
			return err
		}
		cerr := scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			rows, err := tx.Query(ctx, "SELECT generate_series(1, 100000000)")
			if err != nil {
				return err
			}
			if !rows.Next() {
				return rows.Err()
			}
			return errChild // rows left open
		})
		if !errors.Is(cerr, errChild) || len(unwrapAll(cerr)) > 1 {
			return fmt.Errorf("child: %v, want its own error alone", cerr)
		}
		_, later = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (2)")
		return nil
	})
	if !errors.Is(later, errRolledBack) {
		t.Errorf("caller's statement after the child: %v, want errRolledBack", later)
	}
	if !errors.Is(err, errRolledBack) || !errors.Is(err, scoped.ErrNotCommitted) {
		t.Errorf("Run: %v, want errRolledBack, ErrNotCommitted", err)
	}
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("rows %v committed", got)
	}
	for _, err := range hooked {
		if !errors.Is(err, errRolledBack) { // the commit's own failure is reported
			t.Errorf("teardown error: %v", err)
		}
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}

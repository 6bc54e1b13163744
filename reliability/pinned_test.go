package reliability_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// pinnedTx is the shape of issue 10, item 1: the scope's transaction is
// begun on the scope's own pinned connection, so it is created after the
// connection although it is asked for first.
func pinnedTx(p *pool) (*scoped.ScopedSession[*sql.Conn], *scoped.ScopedSession[*sql.Tx]) {
	conns := scoped.New(scopedsql.Conn(p.DB))
	txs := scoped.New(func(ctx context.Context) (*sql.Tx, error) {
		c, err := conns.Current(ctx)
		if err != nil {
			return nil, err
		}
		return c.BeginTx(context.WithoutCancel(ctx), nil)
	})
	return conns, txs
}

// A transaction begun on the scope's pinned connection is ended before the
// connection, so Remove and Commit return (Remove used to hang forever in
// (*sql.Conn).Close, waiting for the transaction next in line) and the
// connection goes back to the pool.
func TestTxOnPinnedConnEndsBeforeTheConn(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 2)
		table := createTable(t, p, "scoped_pinned")
		_, txs := pinnedTx(p)
		for id, commit := range []bool{false, true} {
			ctx, scope := scoped.Begin(context.Background())
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, sqlFor(s, "INSERT INTO "+table+" (id, kind) VALUES ($1, 'pinned')"), id); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				if commit {
					done <- scope.Commit()
				} else {
					done <- scope.Remove()
				}
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("commit=%v: %v", commit, err)
				}
			case <-time.After(dbtest.Bound):
				t.Fatalf("commit=%v: the scope's end hung", commit)
			}
			if n := p.drain(); n != 0 {
				t.Fatalf("commit=%v: %d connections still in use", commit, n)
			}
		}
		if got := rowIDs(t, p, table); len(got) != 1 || got[1] != 1 {
			t.Fatalf("rows %v, want only the committed id 1", got)
		}
	})
}

// Through scopedhttp in Autocommit, a handler of that shape that answers
// 404 gets its 404 to the client (it used to be never answered).
func TestTxOnPinnedConnAnswersNon2xx(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 2)
		_, txs := pinnedTx(p)
		h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tx, err := txs.Current(r.Context())
				if err != nil {
					http.Error(w, "no transaction", http.StatusInternalServerError)
					return
				}
				var one int
				if err := tx.QueryRowContext(r.Context(), "SELECT 1").Scan(&one); err != nil {
					http.Error(w, "query failed", http.StatusInternalServerError)
					return
				}
				http.NotFound(w, r)
			}))
		srv := httptest.NewServer(h)
		defer srv.Close()
		client := &http.Client{Timeout: dbtest.Bound}
		resp, err := client.Get(srv.URL)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("the 404 was never answered")
			}
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d, want 404", resp.StatusCode)
		}
		client.CloseIdleConnections()
		if n := p.drain(); n != 0 {
			t.Fatalf("%d connections still in use", n)
		}
	})
}

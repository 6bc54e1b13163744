package scopedsql_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// openDB opens s and closes it when t ends.
func openDB(t testing.TB, s dbtest.Server) *sql.DB {
	t.Helper()
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(dbtest.Ctx(t)); err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	return db
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func backendID(t testing.TB, q queryer, s dbtest.Server) int64 {
	t.Helper()
	var id int64
	if err := q.QueryRowContext(dbtest.Ctx(t), s.BackendIDQuery()).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// errorLog collects teardown errors instead of logging them.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) option() scoped.Option {
	return scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.errs = append(l.errs, err)
	})
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

func wantInUse(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	if got := db.Stats().InUse; got != n {
		t.Errorf("db.Stats().InUse = %d, want %d", got, n)
	}
}

func wantStats(t testing.TB, got, want scoped.Stats) {
	t.Helper()
	if got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// Package pgxkit is the pgx part of the test kit that scopedpgx's
// packages share (the driver-free part is internal/dbtest, in the root
// module, which cannot depend on pgx).
package pgxkit

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped/internal/dbtest"
)

// Pool returns a pool of at most maxConns connections to the test server,
// closed when t ends; it skips t without a server. params are pairs of
// run-time parameters set on every connection.
func Pool(t testing.TB, maxConns int32, params ...string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	for i := 0; i+1 < len(params); i += 2 {
		cfg.ConnConfig.RuntimeParams[params[i]] = params[i+1]
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Close waits for every acquired connection: after a failure that
		// left one acquired, report it instead of hanging.
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("%d connections left acquired; pool not closed", n)
			return
		}
		pool.Close()
	})
	return pool
}

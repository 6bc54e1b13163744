package scopedpgx

import (
	"context"
	"database/sql"
	"net/http"
	"testing"
	"time"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/jackc/pgx/v5/stdlib"
)

// testAcrossDrivers: one client's position crosses drivers, in a service
// that uses both scopedpgx and scopedsql (or moves from one to the
// other), whichever's ReadYourWrites carries it: the write of one
// driver's unit sets the cookie, and the other driver's read-only unit of
// the client's next request reads it on the primary while the replica
// applies it late; a client without the cookie reads the replica's stale
// row.
func (s *replicaSetup) testAcrossDrivers(t *testing.T) {
	s.r.SetApplyDelay(time.Hour)
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	// database/sql over pgx's stdlib, on the same proxies: scopedsql's
	// routing and position need PostgreSQL, not lib/pq.
	primaryDB, replicaDB := stdlib.OpenDBFromPool(s.primary), stdlib.OpenDBFromPool(s.replica)
	defer primaryDB.Close()
	defer replicaDB.Close()
	pgxTxs := s.txs()
	sqlTxs := scopedsql.NewTx(primaryDB, nil, scopedsql.WithReplicas(replicaDB))
	read := "SELECT coalesce((SELECT n FROM " + s.table + " WHERE id = $1), -1), pg_is_in_recovery()"

	pgxWrite := func(ctx context.Context, id int) error {
		tx, err := pgxTxs.Current(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, "INSERT INTO "+s.table+" (id, n) VALUES ($1, 1)", id)
		}
		return err
	}
	sqlWrite := func(ctx context.Context, id int) error {
		tx, err := sqlTxs.Current(ctx)
		if err == nil {
			_, err = tx.ExecContext(ctx, "INSERT INTO "+s.table+" (id, n) VALUES ($1, 1)", id)
		}
		return err
	}
	pgxRead := func(ctx context.Context, id int) (n int, on bool, err error) {
		tx, err := pgxTxs.Current(ctx)
		if err == nil {
			err = tx.QueryRow(ctx, read, id).Scan(&n, &on)
		}
		return n, on, err
	}
	sqlRead := func(ctx context.Context, id int) (n int, on bool, err error) {
		var tx *sql.Tx
		tx, err = sqlTxs.Current(ctx)
		if err == nil {
			err = tx.QueryRowContext(ctx, read, id).Scan(&n, &on)
		}
		return n, on, err
	}

	for _, c := range []struct {
		name    string
		carrier func(string) func(http.Handler) http.Handler
		write   func(context.Context, int) error
		read    func(context.Context, int) (int, bool, error)
		id      int
	}{
		{"scopedsql's cookie, pgx writes, database/sql reads", scopedsql.ReadYourWrites, pgxWrite, sqlRead, 600},
		{"scopedpgx's cookie, database/sql writes, pgx reads", ReadYourWrites, sqlWrite, pgxRead, 601},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := dbtest.RowHandler(func(ctx context.Context) error { return c.write(ctx, c.id) },
				func(ctx context.Context) (int, bool, error) { return c.read(ctx, c.id) })
			mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
				scopedhttp.Bind(pgxTxs), scopedhttp.Bind(sqlTxs))
			do, client := dbtest.ServeClients(t, c.carrier("rp")(scopedhttp.ReadOnlySafeMethods(mw(app))))
			dbtest.ReadsOwnWrite(t, do, client)
		})
	}
}

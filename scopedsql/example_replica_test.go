package scopedsql_test

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

// Read replicas with read-your-writes: read-only units run on the
// replica, other units on the primary; a client that carries the
// position of its write reads from the replica only once the replica has
// replayed it. (go-sqlmock stands in for a primary and a replica; in a
// service, scopedsql.ReadYourWrites carries the position in a cookie and
// scopedhttp.ReadOnlySafeMethods makes GET units read-only.)
func ExampleWithReplicas() {
	primary, pm, _ := sqlmock.New()
	defer primary.Close()
	replica, rm, _ := sqlmock.New()
	defer replica.Close()

	// A write, then the read of the position after its commit.
	pm.ExpectBegin()
	pm.ExpectExec("UPDATE users").WillReturnResult(sqlmock.NewResult(0, 1))
	pm.ExpectCommit()
	pm.ExpectQuery("pg_current_wal_insert_lsn").WillReturnRows(sqlmock.NewRows([]string{"lsn"}).AddRow("0/3000060"))
	// The next read: the replica has replayed the position (true), and does
	// not lag (true).
	rm.ExpectBegin()
	rm.ExpectQuery("pg_last_wal_replay_lsn").WillReturnRows(sqlmock.NewRows([]string{"replayed", "fresh"}).AddRow(true, true))
	rm.ExpectQuery("SELECT name FROM users").WillReturnRows(sqlmock.NewRows([]string{"name"}).AddRow("Ada"))
	rm.ExpectCommit()

	txs := scopedsql.NewTx(primary, nil, scopedsql.WithReplicas(replica),
		scoped.WithEventHook(func(_ context.Context, e scoped.Event) {
			if e.Kind == scoped.Created {
				fmt.Println("unit on", e.Route)
			}
		}))

	// The first request of a client that has written nothing yet.
	client := scopedsql.WithReadAfter(context.Background(), 0)
	err := scoped.Run(client, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE users SET name = 'Ada' WHERE id = 1")
		return err
	})
	pos := scopedsql.CommitPosition(client)
	fmt.Println("position:", pos, err)

	// Its next request, read-only, carrying the position.
	next := scopedsql.WithReadAfter(context.Background(), pos)
	next, _ = scopedsql.WithTxOptions(next, sql.TxOptions{ReadOnly: true})
	err = scoped.Run(next, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		var name string
		if err := tx.QueryRowContext(ctx, "SELECT name FROM users WHERE id = 1").Scan(&name); err != nil {
			return err
		}
		fmt.Println("read:", name)
		return nil
	})
	fmt.Println(err, pm.ExpectationsWereMet(), rm.ExpectationsWereMet())
	// Output:
	// unit on primary
	// position: 0/3000060 <nil>
	// unit on replica 1
	// read: Ada
	// <nil> <nil> <nil>
}

package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

type exampleTenantKey struct{}

// Row-level security: every transaction sets its tenant right after
// BEGIN, transaction-local; a unit without a tenant never gets a
// transaction. (go-sqlmock stands in for a database server.)
func ExampleWithSetup() {
	db, mock, _ := sqlmock.New()
	defer db.Close()
	mock.ExpectBegin()
	mock.ExpectExec("SELECT set_config").WithArgs("tenant-a").WillReturnResult(sqlmock.NewResult(0, 0))
	mock.ExpectExec("INSERT INTO notes").WillReturnResult(sqlmock.NewResult(1, 1))
	mock.ExpectCommit()
	mock.ExpectBegin()
	mock.ExpectRollback()

	errNoTenant := errors.New("no tenant")
	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(func(ctx context.Context, tx *sql.Tx) error {
		tenant, ok := ctx.Value(exampleTenantKey{}).(string)
		if !ok {
			return errNoTenant
		}
		_, err := tx.ExecContext(ctx, "SELECT set_config('app.tenant_id', $1, true)", tenant)
		return err
	}), scoped.WithName("notes"))

	// The tenant is in the context before the unit begins.
	ctx := context.WithValue(context.Background(), exampleTenantKey{}, "tenant-a")
	err := scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO notes (body) VALUES ('hello')")
		return err
	})
	fmt.Println("with a tenant:", err)

	err = scoped.Run(context.Background(), func(ctx context.Context) error {
		_, err := txs.Current(ctx)
		return err
	})
	fmt.Println("without one, errNoTenant:", errors.Is(err, errNoTenant))
	fmt.Println(mock.ExpectationsWereMet())
	// Output:
	// with a tenant: <nil>
	// without one, errNoTenant: true
	// <nil>
}

// A read-only unit, in one line before it begins.
func ExampleWithTxOptions() {
	db, mock, _ := sqlmock.New()
	defer db.Close()
	mock.ExpectBegin()
	mock.ExpectQuery("SELECT count").WillReturnRows(sqlmock.NewRows([]string{"n"}).AddRow(3))
	mock.ExpectCommit()
	txs := scopedsql.NewTx(db, nil)

	ctx, err := scopedsql.WithTxOptions(context.Background(), sql.TxOptions{ReadOnly: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx) // BEGIN READ ONLY
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil {
			return err
		}
		fmt.Println("notes:", n)
		// Too late for this unit: its transaction has begun.
		_, err = scopedsql.WithTxOptions(ctx, sql.TxOptions{Isolation: sql.LevelSerializable})
		fmt.Println(errors.Is(err, scopedsql.ErrTxOptionsLate))
		return nil
	})
	fmt.Println(err)
	// Output:
	// notes: 3
	// true
	// <nil>
}

package scopedsql_test

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

// One transaction per scope: begun on first use, committed by the scope.
// (go-sqlmock stands in for a database server.)
func ExampleTx() {
	db, mock, _ := sqlmock.New()
	defer db.Close()
	mock.ExpectBegin()
	mock.ExpectExec("INSERT INTO users").WithArgs("ada").WillReturnResult(sqlmock.NewResult(1, 1))
	mock.ExpectCommit()

	txs := scoped.New(scopedsql.Tx(db, nil)) // once, at start-up

	ctx, scope := scoped.Begin(context.Background()) // per request or job
	defer scope.Remove()
	tx, err := txs.Current(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO users (name) VALUES ($1)", "ada"); err != nil {
		fmt.Println(err)
		return
	}
	if err := scope.Commit(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%+v\n", txs.Stats())
	fmt.Println(mock.ExpectationsWereMet())
	// Output:
	// {Live:0 Created:1 Committed:1 RolledBack:0 Failed:0}
	// <nil>
}

// A pinned connection keeps session state for the whole scope.
func ExampleConn() {
	db, mock, _ := sqlmock.New()
	defer db.Close()
	mock.ExpectExec("SET search_path TO tenant_42").WillReturnResult(sqlmock.NewResult(0, 0))
	mock.ExpectQuery("SHOW search_path").WillReturnRows(sqlmock.NewRows([]string{"search_path"}).AddRow("tenant_42"))

	conns := scoped.New(scopedsql.Conn(db))

	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove() // the connection goes back to the pool
	c, _ := conns.Current(ctx)
	if _, err := c.ExecContext(ctx, "SET search_path TO tenant_42"); err != nil {
		fmt.Println(err)
		return
	}
	// ... later in the same scope, the same connection:
	c, _ = conns.Current(ctx)
	var path string
	if err := c.QueryRowContext(ctx, "SHOW search_path").Scan(&path); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(path)
	// Output: tenant_42
}

// Named engines from configuration, overlaid on shared defaults.
func ExampleOpen() {
	// Two go-sqlmock databases stand in for a primary and a replica.
	primary, _, _ := sqlmock.NewWithDSN("example-primary")
	defer primary.Close()
	replica, _, _ := sqlmock.NewWithDSN("example-replica")
	defer replica.Close()

	engines, err := scopedsql.Open(context.Background(),
		scopedsql.EngineConfig{Driver: "sqlmock", MaxOpenConns: 10},
		map[string]scopedsql.EngineConfig{
			"default": {DSN: "example-primary"},
			"reports": {DSN: "example-replica", MaxOpenConns: 2, TxOptions: &sql.TxOptions{ReadOnly: true}},
		})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer engines.Close()

	reports := scoped.New(engines.Tx("reports")) // read-only transactions on the replica
	fmt.Println(reports)

	cfg, _ := engines.Config("reports")
	fmt.Println(engines.Names(), cfg.MaxOpenConns, cfg.TxOptions.ReadOnly)

	_, err = engines.DB("report")
	fmt.Println(err)
	// Output:
	// *sql.Tx
	// [default reports] 2 true
	// scopedsql: unknown engine "report" (configured: "default", "reports")
}

// sqlStateError stands for a driver's error, such as *pq.Error or
// *pgconn.PgError, which report their SQLSTATE with this method.
type sqlStateError string

func (e sqlStateError) Error() string    { return "SQLSTATE " + string(e) }
func (e sqlStateError) SQLState() string { return string(e) }

func ExampleRetryable() {
	serialization := fmt.Errorf("scoped: commit *sql.Tx session: %w", sqlStateError("40001"))
	unique := fmt.Errorf("insert user: %w", sqlStateError("23505"))
	fmt.Println(scopedsql.Retryable(serialization), scopedsql.Retryable(unique))
	// Output: true false
}

package scopedsql_test

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

// What sqlc generates for database/sql (db.go and a query file), written
// here by hand.

type DBTX interface {
	ExecContext(context.Context, string, ...interface{}) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...interface{}) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...interface{}) *sql.Row
}

func NewQueries(db DBTX) *Queries { return &Queries{db: db} }

type Queries struct{ db DBTX }

type User struct {
	ID       int64
	Username string
}

const createUser = `INSERT INTO users (username) VALUES ($1) RETURNING id, username`

func (q *Queries) CreateUser(ctx context.Context, username string) (User, error) {
	row := q.db.QueryRowContext(ctx, createUser, username)
	var i User
	err := row.Scan(&i.ID, &i.Username)
	return i, err
}

const countUsers = `SELECT count(*) FROM users`

func (q *Queries) CountUsers(ctx context.Context) (int64, error) {
	row := q.db.QueryRowContext(ctx, countUsers)
	var count int64
	err := row.Scan(&count)
	return count, err
}

// One *Queries for the whole program: in a scope (a request, a job) its
// statements run in the scope's transaction; outside, on the pool.
func ExampleDBTX() {
	db, mock, _ := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	defer db.Close()
	mock.ExpectBegin()
	mock.ExpectQuery(createUser).WithArgs("ada").
		WillReturnRows(sqlmock.NewRows([]string{"id", "username"}).AddRow(1, "ada"))
	mock.ExpectCommit()
	mock.ExpectQuery(countUsers).WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(1))

	txs := scoped.New(scopedsql.Tx(db, nil))
	queries := NewQueries(scopedsql.NewDBTX(db, txs))

	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	u, err := queries.CreateUser(ctx, "ada") // BEGIN, then the INSERT in the transaction
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := scope.Commit(); err != nil {
		fmt.Println(err)
		return
	}
	n, err := queries.CountUsers(context.Background()) // no scope: on the pool
	fmt.Println(u.ID, u.Username, n, err, mock.ExpectationsWereMet())
	// Output: 1 ada 1 <nil> <nil>
}

package scopedpgx_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedpgx"
)

// What sqlc generates for pgx/v5 (db.go, with emit options for CopyFrom
// and SendBatch, and a query file), written here by hand.

type DBTX interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
	Query(context.Context, string, ...interface{}) (pgx.Rows, error)
	QueryRow(context.Context, string, ...interface{}) pgx.Row
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}

func NewQueries(db DBTX) *Queries { return &Queries{db: db} }

type Queries struct{ db DBTX }

func (q *Queries) WithTx(tx pgx.Tx) *Queries { return &Queries{db: tx} }

type User struct {
	ID       int64
	Username string
}

const createUser = `INSERT INTO users (username) VALUES ($1) RETURNING id, username`

// :one
func (q *Queries) CreateUser(ctx context.Context, username string) (User, error) {
	row := q.db.QueryRow(ctx, createUser, username)
	var i User
	err := row.Scan(&i.ID, &i.Username)
	return i, err
}

const listUsers = `SELECT id, username FROM users ORDER BY id`

// :many
func (q *Queries) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := q.db.Query(ctx, listUsers)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []User
	for rows.Next() {
		var i User
		if err := rows.Scan(&i.ID, &i.Username); err != nil {
			return nil, err
		}
		items = append(items, i)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return items, nil
}

const deleteUser = `DELETE FROM users WHERE username = $1`

// :execrows
func (q *Queries) DeleteUser(ctx context.Context, username string) (int64, error) {
	result, err := q.db.Exec(ctx, deleteUser, username)
	if err != nil {
		return 0, err
	}
	return result.RowsAffected(), nil
}

// :copyfrom
func (q *Queries) CreateUsers(ctx context.Context, usernames []string) (int64, error) {
	return q.db.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"username"},
		pgx.CopyFromSlice(len(usernames), func(i int) ([]any, error) { return []any{usernames[i]}, nil }))
}

const renameUser = `UPDATE users SET username = $2 WHERE id = $1`

type RenameUserParams struct {
	ID       int64
	Username string
}

var ErrBatchAlreadyClosed = errors.New("batch already closed")

type RenameUserBatchResults struct {
	br     pgx.BatchResults
	tot    int
	closed bool
}

// :batchexec
func (q *Queries) RenameUser(ctx context.Context, arg []RenameUserParams) *RenameUserBatchResults {
	batch := &pgx.Batch{}
	for _, a := range arg {
		batch.Queue(renameUser, a.ID, a.Username)
	}
	return &RenameUserBatchResults{br: q.db.SendBatch(ctx, batch), tot: len(arg)}
}

func (b *RenameUserBatchResults) Exec(f func(int, error)) {
	defer b.br.Close()
	for t := 0; t < b.tot; t++ {
		if b.closed {
			if f != nil {
				f(t, ErrBatchAlreadyClosed)
			}
			continue
		}
		_, err := b.br.Exec()
		if f != nil {
			f(t, err)
		}
	}
}

func (b *RenameUserBatchResults) Close() error {
	b.closed = true
	return b.br.Close()
}

// One *Queries for the whole program: in a scope (a request, a job) its
// statements run in the scope's transaction; outside, on the pool. (Not
// run here: it needs a PostgreSQL server with a users table.)
func ExampleDBTX() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@localhost:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
	queries := NewQueries(scopedpgx.NewDBTX(pool, txs))

	signup := func(ctx context.Context, name string) (User, error) {
		ctx, scope := scoped.Begin(ctx)
		defer scope.Remove() // rolls back unless committed

		u, err := queries.CreateUser(ctx, name) // BEGIN goes with the INSERT
		if err != nil {
			return User{}, err
		}
		return u, scope.Commit()
	}
	u, err := signup(ctx, "ada")
	if err != nil {
		log.Fatal(err)
	}
	users, err := queries.ListUsers(ctx) // no scope: on the pool
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.Username, len(users))
}

package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"
	"github.com/ncruces/go-sqlite3"
)

// User is the example's one model.
type User struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
}

// errTaken is returned by insert for a username that already exists.
var errTaken = errors.New("username taken")

// store speaks one SQL dialect. Its methods take the request's
// transaction: they never begin or commit one themselves.
type store struct {
	driver string // "sqlite", "postgres" or "mysql"
	table  string
}

func (s store) createTable(ctx context.Context, db *sql.DB) error {
	id := "INTEGER PRIMARY KEY AUTOINCREMENT"
	switch s.driver {
	case "postgres":
		id = "BIGSERIAL PRIMARY KEY"
	case "mysql":
		id = "BIGINT AUTO_INCREMENT PRIMARY KEY"
	}
	_, err := db.ExecContext(ctx, fmt.Sprintf(
		"CREATE TABLE IF NOT EXISTS %s (id %s, username VARCHAR(64) NOT NULL UNIQUE)", s.table, id))
	return err
}

func (s store) insert(ctx context.Context, tx *sql.Tx, username string) (User, error) {
	u := User{Username: username}
	var err error
	if s.driver == "postgres" {
		err = tx.QueryRowContext(ctx, fmt.Sprintf("INSERT INTO %s (username) VALUES ($1) RETURNING id", s.table),
			username).Scan(&u.ID)
	} else {
		var res sql.Result
		if res, err = tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (username) VALUES (?)", s.table), username); err == nil {
			u.ID, err = res.LastInsertId()
		}
	}
	if isUniqueViolation(err) {
		return User{}, errTaken
	}
	return u, err
}

func (s store) get(ctx context.Context, tx *sql.Tx, id int64) (User, error) {
	u := User{ID: id}
	err := tx.QueryRowContext(ctx, s.bind("SELECT username FROM "+s.table+" WHERE id = ?"), id).Scan(&u.Username)
	return u, err
}

func (s store) list(ctx context.Context, tx *sql.Tx) ([]User, error) {
	rows, err := tx.QueryContext(ctx, "SELECT id, username FROM "+s.table+" ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	users := []User{}
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Username); err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, rows.Err()
}

// bind rewrites ? placeholders for PostgreSQL.
func (s store) bind(query string) string {
	if s.driver != "postgres" {
		return query
	}
	out, n := make([]byte, 0, len(query)+8), 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			out = fmt.Appendf(out, "$%d", n)
			continue
		}
		out = append(out, query[i])
	}
	return string(out)
}

func isUniqueViolation(err error) bool {
	var pqErr *pq.Error
	var myErr *mysql.MySQLError
	var liteErr *sqlite3.Error
	switch {
	case errors.As(err, &pqErr):
		return pqErr.Code == "23505" // unique_violation
	case errors.As(err, &myErr):
		return myErr.Number == 1062 // ER_DUP_ENTRY
	case errors.As(err, &liteErr):
		return liteErr.ExtendedCode() == sqlite3.CONSTRAINT_UNIQUE
	}
	return false
}

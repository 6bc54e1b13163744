// Command users serves a small users API with one scoped transaction per
// request, committed when the response is 2xx:
//
//	POST /users        {"username": "ada"}  -> 201 {"id": 1, "username": "ada"}
//	GET  /users/{id}                         -> 200 {"id": 1, "username": "ada"} or 404
//	GET  /users                              -> 200 [{"id": 1, "username": "ada"}]
//
// By default it keeps its data in users.db, an SQLite file in the working
// directory (github.com/ncruces/go-sqlite3: pure Go, no cgo, no server). -driver postgres or -driver mysql with
// -dsn use a server instead.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/lib/pq"
	_ "github.com/ncruces/go-sqlite3/driver" // registers "sqlite3"
	_ "github.com/ncruces/go-sqlite3/embed"  // SQLite itself, as WebAssembly run by wazero
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], log, nil); err != nil {
		stop()
		log.Error("users: exiting", "error", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down gracefully: in-flight
// requests finish (and their scopes end) before the database is closed.
// ready, if not nil, gets the listening address.
func run(ctx context.Context, args []string, log *slog.Logger, ready func(addr string)) error {
	fs := flag.NewFlagSet("users", flag.ContinueOnError)
	driver := fs.String("driver", "sqlite", "database: sqlite, postgres or mysql")
	dsn := fs.String("dsn", "", "data source name (default for sqlite: users.db in the working directory)")
	addr := fs.String("addr", ":8080", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := openDB(ctx, *driver, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	st := store{driver: *driver, table: "users"}
	if err := st.createTable(ctx, db); err != nil {
		return fmt.Errorf("create table: %w", err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newHandler(db, st, log),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	log.Info("users: serving", "addr", ln.Addr().String(), "driver", *driver)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("users: shutting down; in-flight requests finish")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openDB opens and pings the database. SQLite gets one connection: it has
// one writer at a time anyway, and a single connection makes concurrent
// requests queue in the pool instead of failing with SQLITE_BUSY.
func openDB(ctx context.Context, driver, dsn string) (*sql.DB, error) {
	switch driver {
	case "sqlite":
		if dsn == "" {
			dsn = "file:users.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"
		}
	case "postgres", "mysql":
		if dsn == "" {
			return nil, fmt.Errorf("-driver %s needs -dsn", driver)
		}
	default:
		return nil, fmt.Errorf("unknown -driver %q: want sqlite, postgres or mysql", driver)
	}
	sqlDriver := driver
	if driver == "sqlite" {
		sqlDriver = "sqlite3" // the name ncruces/go-sqlite3 registers
	}
	db, err := sql.Open(sqlDriver, dsn)
	if err != nil {
		return nil, err
	}
	if driver == "sqlite" {
		db.SetMaxOpenConns(1)
	}
	// The first SQLite connection of a process compiles SQLite's
	// WebAssembly (about 2 s; far longer under the race detector).
	pingTimeout := 10 * time.Second
	if driver == "sqlite" {
		pingTimeout = 2 * time.Minute
	}
	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ping %s: %w", driver, err)
	}
	return db, nil
}

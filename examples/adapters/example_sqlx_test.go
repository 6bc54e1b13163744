package adapters_test

import (
	"context"
	"fmt"
	"log"

	"github.com/go-scoped/scoped"
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // pure-Go SQLite, so that the example runs anywhere
)

// A *sqlx.Tx per scope needs no teardown options: it has the Commit() and
// Rollback() of the *sql.Tx it embeds, which scoped detects.
func Example_sqlx() {
	ctx := context.Background()
	db, err := sqlx.Open("sqlite", "file:sqlx-example?mode=memory&cache=shared")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.MustExecContext(ctx, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")

	users := scoped.New(func(ctx context.Context) (*sqlx.Tx, error) {
		return db.BeginTxx(ctx, nil)
	})

	// addUser is code far from where the scope begins; it finds the
	// scope's transaction in the context.
	addUser := func(ctx context.Context, name string) error {
		tx, err := users.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.NamedExecContext(ctx, "INSERT INTO users (name) VALUES (:name)", map[string]any{"name": name})
		return err
	}

	// One scope commits, the other is only removed: rolled back.
	for _, u := range []struct {
		name   string
		commit bool
	}{{"ada", true}, {"bob", false}} {
		ctx, scope := scoped.BeginWithoutSafetyNet(ctx)
		if err := addUser(ctx, u.name); err != nil {
			log.Fatal(err)
		}
		end := scope.Remove
		if u.commit {
			end = scope.Commit
		}
		if err := end(); err != nil {
			log.Fatal(err)
		}
	}

	var names []string
	if err := db.SelectContext(ctx, &names, "SELECT name FROM users ORDER BY id"); err != nil {
		log.Fatal(err)
	}
	st := users.Stats()
	fmt.Println(names, "committed:", st.Committed, "rolled back:", st.RolledBack)
	// Output: [ada] committed: 1 rolled back: 1
}

package adapters_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"regexp"
	"sync/atomic"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/go-scoped/scoped"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

type user struct {
	ID   int
	Name string
}

// A gorm transaction (a *gorm.DB from Begin) per scope. Its Commit and
// Rollback return a *gorm.DB, not an error, so scoped cannot detect them:
// the teardown is given with WithCommit and WithRollback, and nesting
// with WithNesting (see gormTxs). The database is go-sqlmock behind
// gorm's PostgreSQL dialect, so that the example runs without a server
// and shows the statements it sends.
func Example_gorm() {
	ctx := context.Background()
	sqlDB, mock := expectTwoScopes()
	defer sqlDB.Close()
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	users := gormTxs(db)

	for _, u := range []struct {
		name   string
		commit bool
	}{{"ada", true}, {"bob", false}} {
		ctx, scope := scoped.BeginWithoutSafetyNet(ctx)
		tx, err := users.Current(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if err := tx.Create(&user{Name: u.name}).Error; err != nil {
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

	if err := mock.ExpectationsWereMet(); err != nil {
		log.Fatal(err)
	}
	st := users.Stats()
	fmt.Println("committed:", st.Committed, "rolled back:", st.RolledBack)
	// Output: committed: 1 rolled back: 1
}

// gormTxs is the ScopedSession of gorm transactions: one per scope, begun
// on db with the scope's context. opts come after its own.
//
// Without WithNesting a child scope (a service function's Run called
// inside another unit) would share its parent's transaction as it is: the
// child's writes would stay when the child fails, and the parent's commit
// would save them. WithNesting gives each child a savepoint instead.
func gormTxs(db *gorm.DB, opts ...scoped.Option) *scoped.ScopedSession[*gorm.DB] {
	begin := func(ctx context.Context) (*gorm.DB, error) {
		tx := db.WithContext(ctx).Begin()
		return tx, tx.Error
	}
	own := []scoped.Option{
		scoped.WithCommit(func(_ context.Context, tx *gorm.DB) error {
			return tx.Commit().Error
		}),
		scoped.WithRollback(func(_ context.Context, tx *gorm.DB) error {
			// A transaction committed or rolled back by hand has nothing
			// left to undo.
			if err := tx.Rollback().Error; err != nil && !errors.Is(err, sql.ErrTxDone) {
				return err
			}
			return nil
		}),
		scoped.WithNesting(gormSavepoint),
	}
	return scoped.New(begin, append(own, opts...)...)
}

// gormSavepoints numbers savepoints, so that names never repeat within a
// transaction.
var gormSavepoints atomic.Uint64

// gormSavepoint is a child scope's part of its parent's gorm transaction:
// a savepoint, released when the child commits, rolled back to when it
// fails. The statements are sent with Exec rather than gorm's SavePoint
// and RollbackTo, which with gorm.io/driver/postgres (v1.6.0) drop the
// server's error: a savepoint refused in an aborted transaction, or one
// that no longer exists, would be reported as done, and scoped could not
// stop the parent from committing what the child left.
func gormSavepoint(ctx context.Context, parent *gorm.DB) (scoped.Nested[*gorm.DB], error) {
	name := fmt.Sprintf("scoped_gorm_%d", gormSavepoints.Add(1))
	exec := func(ctx context.Context, sql string) error {
		return parent.WithContext(ctx).Exec(sql).Error
	}
	if err := exec(ctx, "SAVEPOINT "+name); err != nil {
		return scoped.Nested[*gorm.DB]{}, err
	}
	return scoped.Nested[*gorm.DB]{
		Session: parent,
		Release: func(ctx context.Context) error { return exec(ctx, "RELEASE SAVEPOINT "+name) },
		Rollback: func(ctx context.Context) error {
			if err := exec(ctx, "ROLLBACK TO SAVEPOINT "+name); err != nil {
				return err
			}
			return exec(ctx, "RELEASE SAVEPOINT "+name)
		},
	}, nil
}

// A unit of work that calls another: the child's failure undoes the
// child's insert only, and the parent commits its own.
func Example_gormNesting() {
	sqlDB, mock := expectFailedChild()
	defer sqlDB.Close()
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	users := gormTxs(db)

	// addUser is a service function: a unit of work of its own when
	// called alone, a savepoint of its caller's transaction when nested.
	addUser := func(ctx context.Context, name string, fail bool) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := users.Current(ctx)
			if err != nil {
				return err
			}
			if err := tx.Create(&user{Name: name}).Error; err != nil {
				return err
			}
			if fail {
				return errors.New("no invitation for " + name)
			}
			return nil
		})
	}

	err = scoped.Run(context.Background(), func(ctx context.Context) error {
		if err := addUser(ctx, "ada", false); err != nil {
			return err
		}
		fmt.Println("bob:", addUser(ctx, "bob", true)) // handled: ada is still saved
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := mock.ExpectationsWereMet(); err != nil {
		log.Fatal(err)
	}
	// Output: bob: no invitation for bob
}

// expectFailedChild returns a mock database expecting two nested units in
// one transaction: the first released, the second rolled back to its
// savepoint, and the transaction committed.
func expectFailedChild() (*sql.DB, sqlmock.Sqlmock) {
	sqlDB, mock, err := sqlmock.New()
	if err != nil {
		log.Fatal(err)
	}
	insert := regexp.QuoteMeta(`INSERT INTO "users" ("name") VALUES ($1) RETURNING "id"`)
	ok := sqlmock.NewResult(0, 0)
	mock.ExpectBegin()
	mock.ExpectExec(`^SAVEPOINT scoped_gorm_\d+$`).WillReturnResult(ok)
	mock.ExpectQuery(insert).WithArgs("ada").WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
	mock.ExpectExec(`^RELEASE SAVEPOINT scoped_gorm_\d+$`).WillReturnResult(ok)
	mock.ExpectExec(`^SAVEPOINT scoped_gorm_\d+$`).WillReturnResult(ok)
	mock.ExpectQuery(insert).WithArgs("bob").WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(2))
	mock.ExpectExec(`^ROLLBACK TO SAVEPOINT scoped_gorm_\d+$`).WillReturnResult(ok)
	mock.ExpectExec(`^RELEASE SAVEPOINT scoped_gorm_\d+$`).WillReturnResult(ok)
	mock.ExpectCommit()
	return sqlDB, mock
}

// expectTwoScopes returns a mock database expecting one insert that is
// committed, then one that is rolled back.
func expectTwoScopes() (*sql.DB, sqlmock.Sqlmock) {
	sqlDB, mock, err := sqlmock.New()
	if err != nil {
		log.Fatal(err)
	}
	insert := regexp.QuoteMeta(`INSERT INTO "users" ("name") VALUES ($1) RETURNING "id"`)
	mock.ExpectBegin()
	mock.ExpectQuery(insert).WithArgs("ada").WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
	mock.ExpectCommit()
	mock.ExpectBegin()
	mock.ExpectQuery(insert).WithArgs("bob").WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(2))
	mock.ExpectRollback()
	return sqlDB, mock
}

package adapters_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"regexp"

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
// the teardown is given with WithCommit and WithRollback. The database is
// go-sqlmock behind gorm's PostgreSQL dialect, so that the example runs
// without a server and shows the statements it sends.
func Example_gorm() {
	ctx := context.Background()
	sqlDB, mock := expectTwoScopes()
	defer sqlDB.Close()
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}

	users := scoped.New(
		func(ctx context.Context) (*gorm.DB, error) {
			tx := db.WithContext(ctx).Begin()
			return tx, tx.Error
		},
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
	)

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

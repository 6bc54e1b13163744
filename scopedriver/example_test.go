package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedriver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

type WelcomeArgs struct {
	UserID int64 `json:"user_id"`
}

func (WelcomeArgs) Kind() string { return "welcome" }

type WelcomeWorker struct {
	river.WorkerDefaults[WelcomeArgs]
}

// Work writes in the job's transaction and never commits it: the
// middleware commits when Work returns nil, together with the job's
// completion.
func (WelcomeWorker) Work(ctx context.Context, job *river.Job[WelcomeArgs]) error {
	tx, err := scoped.Current[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO welcomed (user_id) VALUES ($1)", job.Args.UserID)
	return err // an error rolls back the insert, and River retries the job
}

// Each job in its own transaction, its completion committed with its
// writes. It needs PostgreSQL: set SCOPED_TEST_POSTGRES_DSN to run it.
func ExampleNewMiddleware() {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(os.Getenv("SCOPED_TEST_POSTGRES_DSN"))
	if err != nil {
		log.Fatal(err)
	}
	// A schema of its own, so that the example touches nothing else.
	schema := fmt.Sprintf("scopedriver_example_%d", os.Getpid())
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema+"; CREATE TABLE welcomed (user_id bigint)"); err != nil {
		log.Fatal(err)
	}
	defer pool.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE") //nolint:errcheck
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		log.Fatal(err)
	}

	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
	workers := river.NewWorkers()
	river.AddWorker(workers, WelcomeWorker{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 10}},
		Workers: workers,
		Middleware: []rivertype.Middleware{
			scopedriver.NewMiddleware(scopedriver.Bind(txs), scopedriver.CompleteTx(txs)),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	done, stopEvents := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer stopEvents()
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Insert(ctx, WelcomeArgs{UserID: 42}, nil); err != nil {
		log.Fatal(err)
	}
	select {
	case ev := <-done:
		fmt.Println(ev.Kind, ev.Job.State, "attempt", ev.Job.Attempt)
	case <-time.After(30 * time.Second):
		log.Fatal("no job event")
	}
	if err := client.Stop(ctx); err != nil {
		log.Fatal(err)
	}

	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM welcomed WHERE user_id = 42").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println("welcomed:", n)
	// Output:
	// job_completed completed attempt 1
	// welcomed: 1
}

type ConfirmOrderArgs struct {
	OrderID int64 `json:"order_id"`
}

func (ConfirmOrderArgs) Kind() string { return "confirm_order" }

// placeOrder is a service function: it runs as a unit of work of its own,
// or as part of its caller's. The confirmation job is written in the
// order's transaction, so it exists if and only if the order does, even
// if the process dies right after the commit; the cache entry, which
// lives outside the database, is dropped by an OnCommit hook, only once
// the order is saved (a lost hook costs a stale entry until it expires).
func placeOrder(ctx context.Context, txs *scoped.ScopedSession[pgx.Tx], client *river.Client[pgx.Tx], cache *sync.Map, customer int64) error {
	return scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRow(ctx, "INSERT INTO orders (customer) VALUES ($1) RETURNING id", customer).Scan(&id); err != nil {
			return err
		}
		if _, err := scopedriver.Insert(ctx, txs, client, ConfirmOrderArgs{OrderID: id}, nil); err != nil {
			return err
		}
		return scoped.OnCommit(ctx, func(context.Context) { cache.Delete(customer) })
	})
}

// The transactional outbox: an order and its confirmation job commit
// together; a cache entry is dropped after the commit. It needs
// PostgreSQL: set SCOPED_TEST_POSTGRES_DSN to run it.
func ExampleInsert() {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(os.Getenv("SCOPED_TEST_POSTGRES_DSN"))
	if err != nil {
		log.Fatal(err)
	}
	schema := fmt.Sprintf("scopedriver_outbox_example_%d", os.Getpid())
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema+"; CREATE TABLE orders (id bigserial PRIMARY KEY, customer bigint)"); err != nil {
		log.Fatal(err)
	}
	defer pool.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE") //nolint:errcheck
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		log.Fatal(err)
	}
	// An insert-only client: the workers run elsewhere.
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		log.Fatal(err)
	}
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
	var cache sync.Map
	cache.Store(int64(7), "7's orders, as they were")

	fmt.Println("placed:", placeOrder(ctx, txs, client, &cache, 7))
	_, cached := cache.Load(int64(7))
	fmt.Println("cached after the commit:", cached)

	// Outside a unit of work nothing is enqueued on the side.
	_, err = scopedriver.Insert(ctx, txs, client, ConfirmOrderArgs{OrderID: 1}, nil)
	fmt.Println("outside a unit:", errors.Is(err, scoped.ErrNoScope))

	var orders, jobs int
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM river_job WHERE kind = 'confirm_order')").Scan(&orders, &jobs); err != nil {
		log.Fatal(err)
	}
	fmt.Println("orders:", orders, "confirmation jobs:", jobs)
	// Output:
	// placed: <nil>
	// cached after the commit: false
	// outside a unit: true
	// orders: 1 confirmation jobs: 1
}

package scoped_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
)

// exampleTx stands in for a database transaction (a *sql.Tx, a pgx.Tx):
// it prints how it ends.
type exampleTx struct {
	name      string
	commitErr error
}

func (t *exampleTx) Commit(context.Context) error {
	fmt.Println("commit", t.name)
	return t.commitErr
}

func (t *exampleTx) Rollback(context.Context) error {
	fmt.Println("rollback", t.name)
	return nil
}

// exampleConn stands in for a connection (a *sql.Conn): it is only closed.
type exampleConn struct{ name string }

func (c *exampleConn) Close() error {
	fmt.Println("close", c.name)
	return nil
}

// beginExampleTx is a session factory, such as scopedsql.Tx(db, nil).
func beginExampleTx(name string) func(context.Context) (*exampleTx, error) {
	return func(context.Context) (*exampleTx, error) {
		fmt.Println("begin", name)
		return &exampleTx{name: name}, nil
	}
}

func ExampleBegin() {
	users := scoped.New(beginExampleTx("users"))

	handle := func(ctx context.Context) error {
		ctx, scope := scoped.Begin(ctx)
		defer scope.Remove() // rolls back whatever was not committed

		a, _ := users.Current(ctx) // begins the transaction
		b, _ := users.Current(ctx) // the same one
		fmt.Println("same session:", a == b)
		return nil // no Commit: the deferred Remove rolls back
	}
	_ = handle(context.Background())
	// Output:
	// begin users
	// same session: true
	// rollback users
}

func ExampleScopedSession_Current() {
	users := scoped.New(beginExampleTx("users"))

	_, err := users.Current(context.Background())
	fmt.Println("outside a scope:", errors.Is(err, scoped.ErrNoScope))

	ctx, scope := scoped.Begin(context.Background())
	tx, _ := users.Current(ctx)
	fmt.Println("in the scope:", tx.name)
	_ = scope.Remove()

	// A late caller never gets a new session that no one would end.
	_, err = users.Current(ctx)
	fmt.Println("after Remove:", errors.Is(err, scoped.ErrScopeClosed))
	// Output:
	// outside a scope: true
	// begin users
	// in the scope: users
	// rollback users
	// after Remove: true
}

func ExampleScope_Commit() {
	users := scoped.New(beginExampleTx("users"))
	audit := scoped.New(beginExampleTx("audit"))
	cache := scoped.New(func(context.Context) (*exampleConn, error) { return &exampleConn{name: "cache"}, nil })

	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove() // after Commit, nothing left to do

	_, _ = users.Current(ctx)
	_, _ = cache.Current(ctx)
	_, _ = audit.Current(ctx)
	// Transactions commit in the order they began; the connection, which
	// has nothing to commit, is closed.
	if err := scope.Commit(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// begin users
	// begin audit
	// commit users
	// commit audit
	// close cache
}

func ExampleScope_Commit_failure() {
	errSerialization := errors.New("could not serialize access")
	newTx := func(name string, commitErr error) *scoped.ScopedSession[*exampleTx] {
		return scoped.New(func(context.Context) (*exampleTx, error) {
			return &exampleTx{name: name, commitErr: commitErr}, nil
		}, scoped.WithName(name), scoped.WithTeardownErrorHook(nil))
	}
	users, orders, audit := newTx("users", nil), newTx("orders", errSerialization), newTx("audit", nil)

	ctx, scope := scoped.Begin(context.Background())
	_, _ = users.Current(ctx)
	_, _ = orders.Current(ctx)
	_, _ = audit.Current(ctx)
	// The first failing commit stops the others, which are rolled back.
	// The error says what that means for the work: users was saved.
	err := scope.Commit()
	fmt.Println(err)
	fmt.Println(errors.Is(err, errSerialization), errors.Is(err, scoped.ErrPartiallyCommitted))
	// Output:
	// commit users
	// commit orders
	// rollback audit
	// scoped: commit failed after other sessions committed: scoped: commit orders session: could not serialize access
	// true true
}

func ExampleDetach() {
	var n int
	users := scoped.New(func(context.Context) (*exampleTx, error) {
		n++
		return &exampleTx{name: fmt.Sprint("tx", n)}, nil
	})

	reqCtx, request := scoped.Begin(context.Background())
	_, _ = users.Current(reqCtx)

	// Work that outlives the request gets its own scope, with the
	// request's values but not its cancellation, and ends it itself.
	bgCtx, background := scoped.Detach(reqCtx)
	requestDone, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer background.Remove()
		<-requestDone
		tx, _ := users.Current(bgCtx)
		fmt.Println("background work uses", tx.name)
	}()

	_ = request.Remove()
	close(requestDone)
	<-done
	// Output:
	// rollback tx1
	// background work uses tx2
	// rollback tx2
}

type exampleTenantKey struct{}

func ExampleWithScopeFunc() {
	// One session per tenant, shared by every request of that tenant.
	tenants := scoped.New(func(ctx context.Context) (*exampleTx, error) {
		tenant := ctx.Value(exampleTenantKey{}).(string)
		fmt.Println("begin", tenant)
		return &exampleTx{name: tenant}, nil
	}, scoped.WithScopeFunc(scoped.ContextValue(exampleTenantKey{})))

	for range 2 { // two requests of one tenant
		ctx, scope := scoped.Begin(context.WithValue(context.Background(), exampleTenantKey{}, "acme"))
		tx, _ := tenants.Current(ctx)
		fmt.Println("request uses", tx.name)
		_ = scope.Remove() // does not end the tenant's session
	}

	_ = tenants.Close() // at shutdown
	// Output:
	// begin acme
	// request uses acme
	// request uses acme
	// rollback acme
}

func ExampleBind() {
	users := scoped.New(beginExampleTx("users"))

	// Code far from where users was made finds it by session type.
	listUsers := func(ctx context.Context) {
		tx, err := scoped.Current[*exampleTx](ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("listing with", tx.name)
	}

	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	listUsers(scoped.Bind(ctx, users))
	// Output:
	// begin users
	// listing with users
	// rollback users
}

func ExampleCurrent() {
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()

	_, err := scoped.Current[*exampleConn](ctx) // nothing bound for *exampleConn
	fmt.Println(errors.Is(err, scoped.ErrNotBound))
	// Output:
	// true
}

// gormLike has no Commit, Rollback or Close of its own, like *gorm.DB.
type gormLike struct{ name string }

func ExampleNew_customTeardown() {
	db := scoped.New(func(context.Context) (*gormLike, error) {
		return &gormLike{name: "gorm"}, nil
	},
		scoped.WithCommit(func(_ context.Context, g *gormLike) error {
			fmt.Println("commit", g.name)
			return nil
		}),
		scoped.WithRollback(func(_ context.Context, g *gormLike) error {
			fmt.Println("rollback", g.name)
			return nil
		}),
	)

	ctx, scope := scoped.Begin(context.Background())
	_, _ = db.Current(ctx)
	_ = scope.Commit()
	// Output:
	// commit gorm
}

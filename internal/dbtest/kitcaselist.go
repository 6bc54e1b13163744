package dbtest

import (
	"context"
	"fmt"

	"github.com/go-scoped/scoped"
)

type kitCase struct {
	name     string
	pgOnly   bool
	failures bool // table: [KitDriver.NewTable] with commitFailures (id < 0 fails COMMIT with 40001)
	run      func(ctx context.Context, e *kitEnv) error
}

// kitCases is every case [KitCases.CompareWithTheRealPool] runs.
var kitCases = []kitCase{
	{name: "retry after a serialization failure", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, fmt.Sprint("run", e.runs))
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if e.runs == 1 {
				return e.serializationFailure(ctx)
			}
			return nil
		}, e.retry)
	}},
	{name: "nested run three deep asks its root to retry", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				if err := e.insert(ctx, 2); err != nil {
					return err
				}
				return scoped.Run(ctx, func(ctx context.Context) error {
					e.hook(ctx, fmt.Sprint("deep", e.runs))
					if err := e.insert(ctx, 3); err != nil {
						return err
					}
					if e.runs == 1 {
						return e.serializationFailure(ctx)
					}
					return nil
				}, e.retry)
			})
			return nil // swallowed: the root retries all the same
		}, e.retry)
	}},
	{name: "hand commit then retryable failure is not retried", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "unit")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if err := e.commit(ctx); err != nil {
				return err
			}
			if err := e.insert(ctx, 2); err != nil {
				return err
			}
			return e.serializationFailure(ctx)
		}, e.retry)
	}},
	// PostgreSQL only: on MySQL a failed statement leaves its transaction
	// able to commit.
	{name: "hand commit then a failed statement fails the commit", pgOnly: true, run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "unit")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if err := e.commit(ctx); err != nil {
				return err
			}
			if err := e.insert(ctx, 2); err != nil {
				return err
			}
			_ = e.insert(ctx, 2) // duplicate key, swallowed: the COMMIT rolls back
			return nil
		}, e.retry)
	}},
	{name: "hand commit then a commit failing with 40001", pgOnly: true, failures: true, run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "unit")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if err := e.commit(ctx); err != nil {
				return err
			}
			return e.insert(ctx, -1) // its COMMIT fails
		}, e.retry)
	}},
	{name: "commit failing with 40001 is retried", pgOnly: true, failures: true, run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, fmt.Sprint("run", e.runs))
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if e.runs == 1 {
				return e.insert(ctx, -1) // its COMMIT fails
			}
			return nil
		}, e.retry)
	}},
	{name: "statement outside a transaction failing its implicit commit", pgOnly: true, failures: true, run: func(ctx context.Context, e *kitEnv) error {
		e.runs++
		return e.insertOutside(ctx, -1)
	}},
	{name: "remove after hand commits, nothing lost", run: func(ctx context.Context, e *kitEnv) error {
		ctx, scope := scoped.Begin(ctx)
		e.runs++
		e.hook(ctx, "unit")
		for id := int64(1); id <= 2; id++ {
			if err := e.insert(ctx, id); err != nil {
				_ = scope.Remove()
				return err
			}
			if err := e.commit(ctx); err != nil {
				_ = scope.Remove()
				return err
			}
		}
		return scope.Remove()
	}},
	{name: "remove after a hand commit loses open work", run: func(ctx context.Context, e *kitEnv) error {
		ctx, scope := scoped.Begin(ctx)
		e.runs++
		e.hook(ctx, "unit")
		if err := e.insert(ctx, 1); err != nil {
			_ = scope.Remove()
			return err
		}
		if err := e.commit(ctx); err != nil {
			_ = scope.Remove()
			return err
		}
		if err := e.insert(ctx, 2); err != nil {
			_ = scope.Remove()
			return err
		}
		return scope.Remove() // 2 is rolled back
	}},
	{name: "hand commit inside a child is a release", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "root")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				e.hook(ctx, "child")
				if err := e.insert(ctx, 2); err != nil {
					return err
				}
				if err := e.commit(ctx); err != nil {
					return err
				}
				return e.serializationFailure(ctx)
			})
			return nil
		}, e.retry)
	}},
}

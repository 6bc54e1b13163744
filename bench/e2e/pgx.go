//go:build !noscopedpgx

package main

import (
	"context"
	"net/http"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgxSkipped is empty: the pgx comparison is built.
const pgxSkipped = ""

// pgxSide holds the pgx variants' pool and handlers.
type pgxSide struct {
	pool         *pgxpool.Pool
	hand, scoped http.Handler // variants E and F
}

func openPgx(ctx context.Context, cfg config, q queries) (*pgxSide, error) {
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = int32(cfg.Pool)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return &pgxSide{pool: pool, hand: pgxHand(pool, q), scoped: pgxScoped(pool, q)}, nil
}

func (p *pgxSide) inUse() int { return int(p.pool.Stat().AcquiredConns()) }

func (p *pgxSide) close() { p.pool.Close() }

// bumpPgx is [queries.bump] on pgx.
func (q queries) bumpPgx(ctx context.Context, tx pgx.Tx, id int) (int64, error) {
	var n int64
	if err := tx.QueryRow(ctx, q.read, id).Scan(&n); err != nil {
		return 0, err
	}
	n++
	if _, err := tx.Exec(ctx, q.update, id, n); err != nil {
		return 0, err
	}
	return n, nil
}

// pgxHand is variant E: the handler begins and ends its own pgx
// transaction.
func pgxHand(pool *pgxpool.Pool, q queries) http.Handler {
	return mux(func(w http.ResponseWriter, r *http.Request) {
		id, ok := q.id(w, r)
		if !ok {
			return
		}
		ctx := r.Context()
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{})
		if err != nil {
			fail(w, err)
			return
		}
		// pgx.ErrTxClosed after Commit; not tied to a cancelled request.
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		n, err := q.bumpPgx(ctx, tx, id)
		if err != nil {
			fail(w, err)
			return
		}
		if err := tx.Commit(ctx); err != nil {
			fail(w, err)
			return
		}
		writeN(w, n)
	})
}

// pgxScoped is variant F: scopedhttp in Autocommit mode with
// scopedpgx.NewTx, the handler asking for the request's pgx.Tx.
func pgxScoped(pool *pgxpool.Pool, q queries) http.Handler {
	reg := scopedpgx.NewTx(pool, pgx.TxOptions{})
	mw := scopedhttp.Middleware(
		scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.Bind(reg),
	)
	return mw(mux(func(w http.ResponseWriter, r *http.Request) {
		id, ok := q.id(w, r)
		if !ok {
			return
		}
		ctx := r.Context()
		tx, err := scoped.Current[pgx.Tx](ctx)
		if err != nil {
			fail(w, err)
			return
		}
		n, err := q.bumpPgx(ctx, tx, id)
		if err != nil {
			fail(w, err)
			return
		}
		writeN(w, n)
	}))
}

package scopedpgx

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// commitOutcomes runs n units of work (insert row i, commit) on 4
// goroutines and counts, against the rows that exist afterwards, the
// phantoms (commit failed, row saved) and the lost (commit succeeded, no
// row).
func commitOutcomes(t *testing.T, direct *pgxpool.Pool, table string, n int, unit func(ctx context.Context, id int) error) (phantom, lost, failed int) {
	t.Helper()
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				errs[id] = unit(context.Background(), id)
			}
		}()
	}
	for id := 1; id <= n; id++ {
		next <- id
	}
	close(next)
	wg.Wait()
	saved := map[int]bool{}
	for _, id := range ids(t, direct, table) {
		saved[id] = true
	}
	for id := 1; id <= n; id++ {
		switch {
		case errs[id] != nil && saved[id]:
			phantom++
			if phantom <= 3 {
				t.Logf("phantom %d: %v", id, errs[id])
			}
		case errs[id] == nil && !saved[id]:
			lost++
		}
		if errs[id] != nil {
			failed++
		}
	}
	return phantom, lost, failed
}

// TestTxCommitOutcomeKnownAfterReset: a proxy resets the connection right
// after forwarding every COMMIT. pgx's own transactions then fail commits
// that were saved (phantoms a retrying client duplicates); scopedpgx's
// learn from the server that they committed: 0 phantom, 0 lost.
func TestTxCommitOutcomeKnownAfterReset(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 4)
	direct := newPool(t, 2)
	table := newTable(t, direct, "verify")
	txs := NewTx(pool, pgx.TxOptions{})
	p.resetAfterCommit.Store(true)

	// pgx's own transactions, on a table of their own: the server may
	// still be committing the last of them when they have returned.
	handTable := newTable(t, direct, "verifyhand")
	const hand = 40
	phantom, lost, _ := commitOutcomes(t, direct, handTable, hand, func(ctx context.Context, id int) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO "+handTable+" (id) VALUES ($1)", id)
			return err
		})
	})
	t.Logf("pgx's own transactions: %d of %d phantoms, %d lost", phantom, hand, lost)
	if phantom == 0 {
		t.Fatal("the proxy made no phantom commits: the fault is not reproduced")
	}

	const n = 300
	resets := p.resets.Load()
	phantom, lost, failed := commitOutcomes(t, direct, table, n, func(ctx context.Context, id int) error {
		ctx, scope := scoped.Begin(ctx)
		defer scope.Remove()
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id); err != nil {
			return err
		}
		return scope.Commit()
	})
	if got := p.resets.Load() - resets; got < n/2 {
		t.Fatalf("%d resets for %d commits", got, n)
	}
	t.Logf("scopedpgx: %d of %d phantoms, %d lost, %d failed", phantom, n, lost, failed)
	if phantom != 0 || lost != 0 {
		t.Errorf("%d phantoms and %d lost of %d commits, want none", phantom, lost, n)
	}
}

// TestTxCommitUnknownWhenServerUnreachable: when the connection fails
// during COMMIT and the server cannot be asked within the bound, the
// commit says the outcome is unknown, not that nothing was saved.
func TestTxCommitUnknownWhenServerUnreachable(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 2)
	direct := newPool(t, 2)
	table := newTable(t, direct, "unknown")
	const bound = 300 * time.Millisecond
	txs := scoped.New(Tx(pool, pgx.TxOptions{}, WithCommitResolveTimeout(bound)), scoped.WithRollback(Rollback), scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 1); err != nil {
		t.Fatal(err)
	}
	p.resetAfterCommit.Store(true)
	p.blackholeAfterReset.Store(true)
	start := time.Now()
	err = scope.Commit()
	took := time.Since(start)
	if !errors.Is(err, scoped.ErrCommitUnknown) {
		t.Fatalf("commit: %v, want scoped.ErrCommitUnknown", err)
	}
	t.Logf("commit answered in %v (bound %v): %v", took, bound, err)
	// Not a timing assertion: a margin of 10 s over the bound catches a
	// commit that waits for something unbounded (pgx's background close
	// of the failed connection sends a cancel request that takes 15 s to
	// give up on an unreachable server).
	if took > bound+10*time.Second {
		t.Errorf("commit took %v, bound %v", took, bound)
	}
	p.blackhole.Store(false)
}

// TestTxReadOnlyCommitHasNothingToResolve: a transaction that wrote
// nothing has no id; its failed COMMIT is reported as pgx reports it,
// without asking the server anything.
func TestTxReadOnlyCommitHasNothingToResolve(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 2)
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)) // the failed commit is asserted below
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	ro, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.QueryRow(ctx, "SELECT 1").Scan(new(int)); err != nil {
		t.Fatal(err)
	}
	if x := ro.(*tx).xid; x != "" {
		t.Fatalf("a read-only transaction has id %q", x)
	}
	p.resetAfterCommit.Store(true)
	p.blackholeAfterReset.Store(true)
	err = scope.Commit()
	p.blackhole.Store(false)
	if err == nil || errors.Is(err, scoped.ErrCommitUnknown) {
		t.Errorf("commit: %v, want the connection's error", err)
	}
}

package scoped_test

// Hook outcomes of every combination of hand ends (ScopedSession.Commit /
// Remove, succeeding or failing), the scope's end (Remove or Commit,
// succeeding or failing), the safety net (before or after the hand ends),
// WithoutSafetyNet sessions, sessions without a commit (io.Closer), in
// root and child units. Each row says which hooks run (OnCommit,
// OnRollback, or neither and a log line: "log") and what was saved and
// undone, as docs/units.md ("Hooks") and the doc comments of OnCommit and
// OnRollback promise: OnCommit only if the unit's work is saved, OnRollback
// when it is undone, neither (logged) when only part of it was saved. A
// failed hand commit, and the safety net's rollback, lose work; a
// transaction removed by hand (ScopedSession.Remove) is the caller's
// decision, not work lost: the unit's end speaks for the rest.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// hoTx is a transaction of the table: its commit (and, in a child, its
// savepoint's release) fails for the names the row's fail set holds.
type hoTx struct{ name string }

// hoCloser is a session without a commit of its own (a pinned connection).
type hoCloser struct {
	name string
	rec  *testkit.Log
	fail bool
}

func (c *hoCloser) Close() error {
	if c.fail {
		c.rec.Add("close %s failed", c.name)
		return errors.New("close failed")
	}
	c.rec.Add("close %s", c.name)
	return nil
}

// hoSkipLog records the "unit hooks not run" lines of log/slog.
type hoSkipLog struct {
	mu sync.Mutex
	n  int
}

func (h *hoSkipLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *hoSkipLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "unit hooks not run") {
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
	}
	return nil
}
func (h *hoSkipLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *hoSkipLog) WithGroup(string) slog.Handler      { return h }
func (h *hoSkipLog) count() int                         { h.mu.Lock(); defer h.mu.Unlock(); return h.n }

type hoOps struct {
	cur, commit, remove func(ctx context.Context) error
}

// Sessions: a, b: transactions; f: its commit fails (root); g: its
// savepoint's release fails (child); p: a transaction WithoutSafetyNet;
// c: an io.Closer; x: an io.Closer whose Close fails.
func hoSessions(rec *testkit.Log) map[string]hoOps {
	tx := func(name string, opts ...scoped.Option) hoOps {
		opts = append(opts,
			scoped.WithName(name),
			scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(_ context.Context, t *hoTx) error {
				if t.name == "f" {
					rec.Add("commit %s failed", t.name)
					return errors.New("commit failed")
				}
				rec.Add("commit %s", t.name)
				return nil
			}),
			scoped.WithRollback(func(_ context.Context, t *hoTx) error { rec.Add("rollback %s", t.name); return nil }),
			scoped.WithNesting(func(_ context.Context, p *hoTx) (scoped.Nested[*hoTx], error) {
				sp := &hoTx{name: p.name + "/sp"}
				return scoped.Nested[*hoTx]{
					Session: sp,
					Release: func(context.Context) error {
						if p.name == "g" {
							rec.Add("release %s failed", sp.name)
							return errors.New("release refused")
						}
						rec.Add("release %s", sp.name)
						return nil
					},
					Rollback: func(context.Context) error { rec.Add("rollback %s", sp.name); return nil },
				}, nil
			}))
		r := scoped.New(func(context.Context) (*hoTx, error) { return &hoTx{name: name}, nil }, opts...)
		return hoOps{
			cur:    func(ctx context.Context) error { _, err := r.Current(ctx); return err },
			commit: r.Commit,
			remove: r.Remove,
		}
	}
	closer := func(name string, fail bool) hoOps {
		r := scoped.New(func(context.Context) (*hoCloser, error) { return &hoCloser{name: name, rec: rec, fail: fail}, nil },
			scoped.WithName(name), scoped.WithTeardownErrorHook(nil))
		return hoOps{
			cur:    func(ctx context.Context) error { _, err := r.Current(ctx); return err },
			commit: r.Commit,
			remove: r.Remove,
		}
	}
	return map[string]hoOps{
		"a": tx("a"), "b": tx("b"), "f": tx("f"), "g": tx("g"),
		"p": tx("p", scoped.WithoutSafetyNet()),
		"c": closer("c", false), "x": closer("x", true),
	}
}

func hoErrKind(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, scoped.ErrPartiallyCommitted):
		return "partial"
	case errors.Is(err, scoped.ErrNotCommitted):
		return "notcommitted"
	case errors.Is(err, scoped.ErrCommittedCloseFailed):
		return "closefailed"
	case errors.Is(err, scoped.ErrScopeClosed):
		return "closed"
	}
	return "other"
}

func TestHookOutcomeCases(t *testing.T) {
	type row struct {
		name string
		// ops, in order: "cur X", "commit X", "remove X" (hand ends, in the
		// root unit; "c.cur X" etc. in the child unit), "c.begin" (a child
		// scope, with hooks of its own), "c.remove"/"c.commit" (the child's
		// end), "net" (the root's context is cancelled; waits for the net),
		// and last "remove" or "commit" (the root scope's end).
		ops    string
		hooks  []string // hooks run and skip lines logged, sorted: OnCommit, OnRollback, child OnCommit, child OnRollback, log
		saved  []string // root transactions committed
		undone []string // root transactions rolled back or whose commit failed; savepoints rolled back (X/sp)
		err    string   // the root end's error kind (hoErrKind)
	}
	rows := []row{
		// Root unit, hand commits, then Remove.
		{name: "hand commit all/remove", ops: "cur a; commit a; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, err: "nil"},
		{name: "hand commit two/remove", ops: "cur a; cur b; commit a; commit b; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a", "b"}, err: "nil"},
		{name: "hand commit one of two/remove", ops: "cur a; cur b; commit a; remove",
			hooks: []string{"log"}, saved: []string{"a"}, undone: []string{"b"}, err: "nil"},
		{name: "hand commit then failed hand commit/remove", ops: "cur a; cur f; commit a; commit f; remove",
			hooks: []string{"log"}, saved: []string{"a"}, undone: []string{"f"}, err: "nil"},
		{name: "failed hand commit only/remove", ops: "cur f; commit f; remove",
			hooks: []string{"OnRollback"}, undone: []string{"f"}, err: "nil"},
		{name: "hand remove then hand commit/remove", ops: "cur a; cur b; remove b; commit a; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, undone: []string{"b"}, err: "nil"},
		{name: "hand remove only/remove", ops: "cur a; remove a; remove",
			hooks: []string{"OnRollback"}, undone: []string{"a"}, err: "nil"},
		{name: "hand remove, again, hand commit/remove", ops: "cur a; remove a; cur a; commit a; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, undone: []string{"a"}, err: "nil"},
		{name: "nothing by hand/remove", ops: "cur a; cur b; remove",
			hooks: []string{"OnRollback"}, undone: []string{"a", "b"}, err: "nil"},

		// Root unit, hand ends, then Commit.
		{name: "hand commit one/commit rest", ops: "cur a; cur b; commit a; commit",
			hooks: []string{"OnCommit"}, saved: []string{"a", "b"}, err: "nil"},
		{name: "hand commit all/commit", ops: "cur a; commit a; commit",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, err: "nil"},
		{name: "hand commit/commit fails", ops: "cur a; cur f; commit a; commit",
			hooks: []string{"log"}, saved: []string{"a"}, undone: []string{"f"}, err: "partial"},
		{name: "second commit fails, nothing by hand", ops: "cur a; cur f; commit",
			hooks: []string{"log"}, saved: []string{"a"}, undone: []string{"f"}, err: "partial"},
		{name: "first commit fails, nothing by hand", ops: "cur f; cur a; commit",
			hooks: []string{"OnRollback"}, undone: []string{"a", "f"}, err: "notcommitted"},
		{name: "hand commit then failed hand commit/commit", ops: "cur a; cur f; commit a; commit f; commit",
			hooks: []string{"log"}, saved: []string{"a"}, undone: []string{"f"}, err: "partial"},
		{name: "failed hand commit only/commit", ops: "cur f; commit f; commit",
			hooks: []string{"OnRollback"}, undone: []string{"f"}, err: "notcommitted"},
		{name: "failed hand commit/commit rest", ops: "cur a; cur f; commit f; commit",
			hooks: []string{"log"}, saved: []string{"a"}, undone: []string{"f"}, err: "partial"},
		{name: "hand remove/commit rest", ops: "cur a; cur b; remove b; commit",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, undone: []string{"b"}, err: "nil"},
		{name: "hand remove only/commit", ops: "cur a; remove a; commit",
			hooks: []string{"OnCommit"}, undone: []string{"a"}, err: "nil"},

		// Sessions without a commit (io.Closer).
		{name: "closer left after hand commit/remove", ops: "cur a; cur c; commit a; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, err: "nil"},
		{name: "closer removed by hand after hand commit/remove", ops: "cur a; cur c; commit a; remove c; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, err: "nil"},
		{name: "failing closer left after hand commit/remove", ops: "cur a; cur x; commit a; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, err: "other"},
		{name: "failing closer left after hand commit/commit", ops: "cur a; cur x; commit a; commit",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, err: "closefailed"},
		{name: "closer only/remove", ops: "cur c; remove",
			hooks: []string{"OnRollback"}, err: "nil"},
		{name: "closer only/commit", ops: "cur c; commit",
			hooks: []string{"OnCommit"}, err: "nil"},
		{name: "closer committed by hand/remove", ops: "cur c; commit c; remove",
			hooks: []string{"OnRollback"}, err: "nil"},

		// The safety net.
		{name: "net/remove", ops: "cur a; net; remove",
			hooks: []string{"OnRollback"}, undone: []string{"a"}, err: "nil"},
		{name: "net/commit", ops: "cur a; net; commit",
			hooks: []string{"OnRollback"}, undone: []string{"a"}, err: "closed"},
		{name: "hand commit, net ends rest/remove", ops: "cur a; cur b; commit a; net; remove",
			hooks: []string{"log"}, saved: []string{"a"}, undone: []string{"b"}, err: "nil"},
		{name: "hand commit all, net idle/remove", ops: "cur a; commit a; net; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, err: "nil"},
		{name: "hand commit all, net idle/commit", ops: "cur a; commit a; net; commit",
			hooks: []string{"OnCommit"}, saved: []string{"a"}, err: "nil"},
		{name: "net partial, hand commit pinned/remove", ops: "cur p; cur a; net; commit p; remove",
			hooks: []string{"log"}, saved: []string{"p"}, undone: []string{"a"}, err: "nil"},
		{name: "net partial, hand commit pinned/commit", ops: "cur p; cur a; net; commit p; commit",
			hooks: []string{"log"}, saved: []string{"p"}, undone: []string{"a"}, err: "partial"},
		{name: "net partial/commit", ops: "cur p; cur a; net; commit",
			hooks: []string{"OnRollback"}, undone: []string{"a", "p"}, err: "notcommitted"},
		{name: "net partial/remove", ops: "cur p; cur a; net; remove",
			hooks: []string{"OnRollback"}, undone: []string{"a", "p"}, err: "nil"},
		{name: "hand commit pinned, net ends rest/remove", ops: "cur p; cur a; commit p; net; remove",
			hooks: []string{"log"}, saved: []string{"p"}, undone: []string{"a"}, err: "nil"},
		{name: "hand commit safe, net finds only pinned, hand commit pinned/remove", ops: "cur p; cur a; commit a; net; commit p; remove",
			hooks: []string{"OnCommit"}, saved: []string{"a", "p"}, err: "nil"},
		{name: "hand commit safe, net finds only pinned, hand commit pinned/commit", ops: "cur p; cur a; commit a; net; commit p; commit",
			hooks: []string{"OnCommit"}, saved: []string{"a", "p"}, err: "nil"},
		{name: "net closes closer, hand commit pinned/remove", ops: "cur p; cur c; net; commit p; remove",
			hooks: []string{"OnCommit"}, saved: []string{"p"}, err: "nil"},
		{name: "net closes closer, hand commit pinned/commit", ops: "cur p; cur c; net; commit p; commit",
			hooks: []string{"OnCommit"}, saved: []string{"p"}, err: "nil"},
		{name: "net closes closer/commit", ops: "cur p; cur c; net; commit",
			hooks: []string{"OnRollback"}, undone: []string{"p"}, err: "notcommitted"},

		// Child units (savepoints): the child's hooks move to the root when it is released.
		{name: "child hand release/child remove/root commit", ops: "c.begin; c.cur a; c.commit a; c.remove; commit",
			hooks: []string{"OnCommit", "child OnCommit"}, saved: []string{"a"}, err: "nil"},
		{name: "child hand release/child remove/root remove", ops: "c.begin; c.cur a; c.commit a; c.remove; remove",
			hooks: []string{"OnRollback", "child OnRollback"}, undone: []string{"a"}, err: "nil"},
		{name: "child release one of two/child remove/root commit", ops: "c.begin; c.cur a; c.cur b; c.commit a; c.remove; commit",
			hooks: []string{"OnCommit", "log"}, saved: []string{"a", "b"}, undone: []string{"b/sp"}, err: "nil"},
		{name: "child failed release/child remove/root commit", ops: "c.begin; c.cur g; c.commit g; c.remove; commit",
			hooks: []string{"OnCommit", "child OnRollback"}, saved: []string{"g"}, undone: []string{"g/sp"}, err: "nil"},
		{name: "child release, failed release/child remove/root commit", ops: "c.begin; c.cur a; c.cur g; c.commit a; c.commit g; c.remove; commit",
			hooks: []string{"OnCommit", "log"}, saved: []string{"a", "g"}, undone: []string{"g/sp"}, err: "nil"},
		{name: "child hand remove/child commit/root commit", ops: "c.begin; c.cur a; c.remove a; c.commit; commit",
			hooks: []string{"OnCommit", "child OnCommit"}, saved: []string{"a"}, undone: []string{"a/sp"}, err: "nil"},
		{name: "child failed release/child commit/root commit", ops: "c.begin; c.cur g; c.commit g; c.commit; commit",
			hooks: []string{"OnCommit", "child OnRollback"}, saved: []string{"g"}, undone: []string{"g/sp"}, err: "nil"},
		{name: "child released/root hand commit/root remove", ops: "c.begin; c.cur a; c.commit; commit a; remove",
			hooks: []string{"OnCommit", "child OnCommit"}, saved: []string{"a"}, err: "nil"},
		{name: "root hand commit, empty child still open/remove", ops: "cur a; commit a; c.begin; remove",
			hooks: []string{"OnCommit", "child OnRollback"}, saved: []string{"a"}, err: "nil"},
	}

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			rec := &testkit.Log{}
			var hooksMu sync.Mutex
			var hooks []string
			ran := func(h string) func(context.Context) {
				return func(context.Context) { hooksMu.Lock(); hooks = append(hooks, h); hooksMu.Unlock() }
			}
			skips := &hoSkipLog{}
			prev := slog.Default()
			slog.SetDefault(slog.New(skips))
			defer slog.SetDefault(prev)
			netDone := make(chan struct{}, 4)
			scoped.SetNetFiredHook(func(*scoped.Scope) { netDone <- struct{}{} })
			scoped.SetNetIdleHook(func(*scoped.Scope) { netDone <- struct{}{} })
			defer scoped.SetNetFiredHook(nil)
			defer scoped.SetNetIdleHook(nil)

			ss := hoSessions(rec)
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx, scope := scoped.Begin(parent)
			defer scope.Remove()
			if err := scoped.OnCommit(ctx, ran("OnCommit")); err != nil {
				t.Fatal(err)
			}
			if err := scoped.OnRollback(ctx, ran("OnRollback")); err != nil {
				t.Fatal(err)
			}
			var cctx context.Context
			var child *scoped.Scope
			endErr := errors.New("no end")
			for _, op := range strings.Split(r.ops, ";") {
				f := strings.Fields(op)
				c := ctx
				verb := f[0]
				if strings.HasPrefix(verb, "c.") {
					verb, c = verb[2:], cctx
				}
				switch {
				case f[0] == "c.begin":
					cctx, child = scoped.Begin(ctx)
					_ = scoped.OnCommit(cctx, ran("child OnCommit"))
					_ = scoped.OnRollback(cctx, ran("child OnRollback"))
				case f[0] == "net":
					cancel()
					testkit.Eventually(t, "the safety net", func() bool {
						select {
						case <-netDone:
							return true
						default:
						}
						return scope.Err() != nil
					})
				case len(f) == 1 && verb == "remove" && c == ctx:
					endErr = scope.Remove()
				case len(f) == 1 && verb == "commit" && c == ctx:
					endErr = scope.Commit()
				case len(f) == 1 && verb == "remove":
					_ = child.Remove()
				case len(f) == 1 && verb == "commit":
					_ = child.Commit()
				case verb == "cur":
					if err := ss[f[1]].cur(c); err != nil {
						t.Fatalf("%s: %v", op, err)
					}
				case verb == "commit":
					_ = ss[f[1]].commit(c) // its failure is the row's point
				case verb == "remove":
					_ = ss[f[1]].remove(c)
				default:
					t.Fatalf("unknown op %q", op)
				}
			}
			// The root's hooks are decided by its end (on the net's goroutine
			// for a scope the net ended): they ran, or the skip was logged.
			testkit.Eventually(t, "the root unit's hook outcome", func() bool {
				hooksMu.Lock()
				defer hooksMu.Unlock()
				return slices.Contains(hooks, "OnCommit") || slices.Contains(hooks, "OnRollback") || skips.count() > 0
			})
			hooksMu.Lock()
			got := slices.Clone(hooks)
			hooksMu.Unlock()
			for range skips.count() {
				got = append(got, "log")
			}
			slices.Sort(got)
			var saved, undone []string
			for _, e := range rec.List() {
				w := strings.Fields(e)
				switch {
				case w[0] == "commit" && len(w) == 2:
					saved = append(saved, w[1])
				case w[0] == "commit" || w[0] == "rollback":
					undone = append(undone, w[1])
				}
			}
			slices.Sort(saved)
			slices.Sort(undone)
			undone = slices.Compact(undone)
			if !slices.Equal(got, r.hooks) {
				t.Errorf("hooks %q, want %q (teardowns %q)", got, r.hooks, rec.List())
			}
			if !slices.Equal(saved, r.saved) || !slices.Equal(undone, r.undone) {
				t.Errorf("saved %q undone %q, want %q and %q (teardowns %q)", saved, undone, r.saved, r.undone, rec.List())
			}
			if k := hoErrKind(endErr); k != r.err {
				t.Errorf("root end returned %v (%s), want %s", endErr, k, r.err)
			}
		})
	}
}

package scopedriver_test

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedriver"
)

// BenchmarkWork is the middleware's own cost per job, without a database:
// bare is River calling Work directly; unused a job that never asks for
// its session; used one that takes it (a session that does nothing), so
// that the scope commits and closes it.
func BenchmarkWork(b *testing.B) {
	sessions := scoped.New(func(context.Context) (*fakeSession, error) { return &fakeSession{}, nil })
	m := scopedriver.NewMiddleware(scopedriver.Bind(sessions))
	ctx := context.Background()
	noop := func(context.Context) error { return nil }
	use := func(ctx context.Context) error {
		_, err := scoped.Current[*fakeSession](ctx)
		return err
	}
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = noop(ctx)
		}
	})
	b.Run("unused", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = m.Work(ctx, runningJob, noop)
		}
	})
	b.Run("used", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Work(ctx, runningJob, use); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package scopedpgx

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
)

// NewTx takes this package's options and the core's in one list, and
// refuses anything else at once, naming it; NewConn takes the core's,
// which the compiler checks.
func TestOptionsOneList(t *testing.T) {
	pool := newPool(t, 1)
	txs := NewTx(pool, pgx.TxOptions{}, WithEagerBegin(), scoped.WithName("orders"), WithoutVerifiedCommit())
	if txs == nil {
		t.Fatal("NewTx with mixed options: nil")
	}
	panics := func(name, want string, f func()) {
		t.Helper()
		var got any
		func() {
			defer func() { got = recover() }()
			f()
		}()
		if !strings.Contains(fmt.Sprint(got), want) {
			t.Errorf("%s: panic %v, want one saying %q", name, got, want)
		}
	}
	panics("foreign option", "NewTx does not take an option of type int", func() { NewTx(pool, pgx.TxOptions{}, 42) })
	panics("nil option", "NewTx with a nil Option", func() { NewTx(pool, pgx.TxOptions{}, nil) })
	panics("nil Option func", "NewTx with a nil Option", func() { NewTx(pool, pgx.TxOptions{}, Option(optionFunc(nil))) })
	panics("nil pool", "NewTx with nil pool", func() { NewTx(nil, pgx.TxOptions{}) })
	panics("NewConn nil pool", "NewConn with nil pool", func() { NewConn(nil) })
}

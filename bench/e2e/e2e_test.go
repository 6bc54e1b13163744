package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped/internal/dbtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHarness runs every comparison in a tiny configuration, with the
// variants alternating and interleaved, and checks what the harness
// measured, not how fast: every request answered 200, the counters grew by
// exactly the number of updates, no connection left checked out, the
// table dropped, a report written.
func TestHarness(t *testing.T) {
	pg := dbtest.Postgres(t)
	for _, interleave := range []bool{false, true} {
		name := "alternating"
		if interleave {
			name = "interleaved"
		}
		t.Run(name, func(t *testing.T) { testHarness(t, pg, interleave) })
	}
}

func testHarness(t *testing.T, pg dbtest.Server, interleave bool) {
	const requests = 50
	cfg := config{
		DSN:        pg.DSN,
		Clients:    4,
		Rounds:     2,
		Requests:   requests,
		Rows:       10, // few rows: concurrent updates of one row must not lose any
		Pool:       4,
		Pairs:      allPairs,
		Order:      "abba",
		Interleave: interleave,
		Timeout:    time.Minute,
	}
	res, err := run(t.Context(), cfg, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	want := len(allPairs)
	if pgxSkipped != "" {
		want--
	}
	if len(res.Pairs) != want {
		t.Fatalf("%d comparisons run, want %d (skipped: %q)", len(res.Pairs), want, res.Skipped)
	}
	for _, p := range res.Pairs {
		if len(p.rounds) != cfg.Rounds {
			t.Errorf("%s: %d rounds, want %d", p.key, len(p.rounds), cfg.Rounds)
		}
		for n, r := range p.rounds {
			where := fmt.Sprintf("%s round %d", p.key, n+1)
			answered, updated, grown := 0, 0, int64(0)
			for i, v := range []*variant{p.base, p.cand} {
				m := r[i]
				answered += m.OK
				updated += m.DBOK
				grown += m.Delta
				if m.Failed != 0 {
					t.Errorf("%s %s: %d failed (%s)", where, v.label, m.Failed, m.Err)
				}
				if !interleave && m.OK != requests {
					t.Errorf("%s %s: %d answered 200, want %d", where, v.label, m.OK, requests)
				}
				if !interleave && m.Delta != int64(m.DBOK) {
					t.Errorf("%s %s: sum(n) grew by %d, %d requests updated a row", where, v.label, m.Delta, m.DBOK)
				}
				switch {
				case !p.mix && m.DBOK != m.OK:
					t.Errorf("%s %s: %d of %d requests updated a row, want all", where, v.label, m.DBOK, m.OK)
				case p.mix && (m.DBOK == 0 || m.DBOK == m.OK):
					t.Errorf("%s %s: %d of %d requests updated a row, want about half", where, v.label, m.DBOK, m.OK)
				}
				if m.InUse != 0 {
					t.Errorf("%s %s: %d connections still in use", where, v.label, m.InUse)
				}
				if m.RPS() <= 0 {
					t.Errorf("%s %s: throughput %v", where, v.label, m.RPS())
				}
			}
			if interleave && answered != requests {
				t.Errorf("%s: %d answered 200 in all, want %d", where, answered, requests)
			}
			if grown != int64(updated) {
				t.Errorf("%s: sum(n) grew by %d, %d requests updated a row", where, grown, updated)
			}
		}
	}
	if probs := res.problems(); len(probs) > 0 {
		t.Errorf("problems: %q", probs)
	}

	var out bytes.Buffer
	writeReport(&out, cfg, envInfo{command: "go run ./bench/e2e", loadBefore: "n/a", loadAfter: "n/a"}, res)
	for _, s := range []string{"| variant | median req/s | ratio | rounds |", "| B: ", "| D: ", "Checks passed"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}

	db, err := sql.Open(pg.Driver, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(t.Context(), "SELECT to_regclass($1) IS NOT NULL", res.Table).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("table %s was not dropped", res.Table)
	}
}

func TestFlags(t *testing.T) {
	cfg, _, err := parseFlags([]string{"-quick", "-rounds", "5", "-dsn", "postgres://u:secret@127.0.0.1/x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Rounds != 5 || cfg.Duration >= time.Second || cfg.Clients != 8 {
		t.Errorf("-quick -rounds 5: got rounds %d, duration %v, clients %d", cfg.Rounds, cfg.Duration, cfg.Clients)
	}
	if _, _, err := parseFlags([]string{"-pairs", "sql,nope"}); err == nil {
		t.Error("-pairs sql,nope: no error")
	}
	if _, _, err := parseFlags([]string{"-clients", "0"}); err == nil {
		t.Error("-clients 0: no error")
	}
	for in, want := range map[string]string{
		"-dsn=postgres://u:secret@h/db":     "-dsn=postgres://u:xxxxx@h/db",
		"postgres://u:secret@h/db?x=1":      "'postgres://u:xxxxx@h/db?x=1'",
		"host=h password=secret dbname=db":  "'host=h password=xxxxx dbname=db'",
		"postgres://u@h/db?sslmode=disable": "'postgres://u@h/db?sslmode=disable'",
	} {
		if got := commandLine([]string{in}); got != "go run ./bench/e2e "+want {
			t.Errorf("commandLine(%q) = %q, want %q", in, got, "go run ./bench/e2e "+want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

// testWriter sends the harness's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	_ "github.com/lib/pq"
)

// variant is one way of serving the endpoint, on its own server.
type variant struct {
	label, name string
	srv         *server
	client      *http.Client
}

// pair is one comparison: a baseline and a candidate measured in
// alternating (or interleaved) rounds.
type pair struct {
	key         string // sql, mix, pgx or aa
	base, cand  *variant
	mix         bool   // half the requests are GET /health
	target      string // the goal for cand/base, for the report
	met         func(ratio float64) bool
	calibration bool             // aa: A against itself, the ratio shows the run's noise
	interleaved bool             // both variants ran at once in every round
	warmup      [2]measurement   // base, cand; not in the figures
	rounds      [][2]measurement // base, cand
}

// ratios returns cand/base of every round.
func (p *pair) ratios() []float64 {
	r := make([]float64, 0, len(p.rounds))
	for _, m := range p.rounds {
		r = append(r, m[1].RPS()/m[0].RPS())
	}
	return r
}

// rps returns the throughput of every round of the baseline (i == 0) or
// the candidate (i == 1).
func (p *pair) rps(i int) []float64 {
	r := make([]float64, 0, len(p.rounds))
	for _, m := range p.rounds {
		r = append(r, m[i].RPS())
	}
	return r
}

// cpu returns the process's CPU µs per request of every round of the
// baseline (i == 0) or the candidate (i == 1).
func (p *pair) cpu(i int) []float64 {
	r := make([]float64, 0, len(p.rounds))
	for _, m := range p.rounds {
		r = append(r, float64(m[i].CPUPerRequest())/float64(time.Microsecond))
	}
	return r
}

// result is what a run measured.
type result struct {
	Table   string   // the table it created and dropped
	PG      string   // PostgreSQL server_version
	Pairs   []*pair  // in the order run
	Skipped []string // notes on comparisons not run
}

// problems lists every failed check of every run, warm-ups included.
func (r *result) problems() []string {
	var out []string
	for _, p := range r.Pairs {
		check := func(round string, r [2]measurement) {
			vs := []*variant{p.base, p.cand}
			for i, v := range vs {
				where := fmt.Sprintf("%s %s %s", p.key, v.label, round)
				if m := r[i]; m.Failed > 0 {
					out = append(out, fmt.Sprintf("%s: %d request(s) not answered 200, first: %s", where, m.Failed, m.Err))
				}
				if m := r[i]; m.InUse != 0 {
					out = append(out, fmt.Sprintf("%s: %d connection(s) still in use afterwards", where, m.InUse))
				}
			}
			if p.interleaved {
				// Both variants ran at once: one growth for both.
				vs = vs[:1]
				r[0].DBOK += r[1].DBOK
			}
			for i, v := range vs {
				if m := r[i]; m.Delta != int64(m.DBOK) {
					out = append(out, fmt.Sprintf("%s %s %s: sum(n) grew by %d but %d requests updated a row",
						p.key, v.label, round, m.Delta, m.DBOK))
				}
			}
		}
		check("warm-up", p.warmup)
		for n, m := range p.rounds {
			check(fmt.Sprintf("round %d", n+1), m)
		}
	}
	return out
}

// bench is the state of a run.
type bench struct {
	cfg      config
	db       *sql.DB
	q        queries
	pg       *pgxSide // nil: no pgx comparison
	progress io.Writer
	servers  []*server
	clients  []*http.Client
}

// run sets up the table, the pools and the servers, runs the comparisons
// of cfg and tears everything down, reporting progress to progress.
func run(ctx context.Context, cfg config, progress io.Writer) (res *result, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	db, err := sql.Open("postgres", cfg.DSN)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	db.SetMaxOpenConns(cfg.Pool)
	db.SetMaxIdleConns(cfg.Pool)
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	res = &result{Table: tableName()}
	if err := db.QueryRowContext(ctx, "SHOW server_version").Scan(&res.PG); err != nil {
		return nil, err
	}
	drop, err := createTable(ctx, db, res.Table, cfg.Rows)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, drop()) }()

	b := &bench{cfg: cfg, db: db, q: newQueries(res.Table, cfg.Rows), progress: progress}
	defer func() { err = errors.Join(err, b.close()) }()
	done := map[string]bool{}
	for _, key := range cfg.Pairs {
		if done[key] {
			continue
		}
		done[key] = true
		p, skipped, err := b.pair(ctx, key)
		if err != nil {
			return res, err
		}
		if skipped != "" {
			res.Skipped = append(res.Skipped, skipped)
			fmt.Fprintln(progress, skipped)
			continue
		}
		if err := b.compare(ctx, p); err != nil {
			return res, fmt.Errorf("%s: %w", key, err)
		}
		res.Pairs = append(res.Pairs, p)
	}
	return res, nil
}

func tableName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "scoped_e2e_" + hex.EncodeToString(b[:])
}

// createTable creates the table with rows counters at 0 and returns the
// function that drops it, which works even after ctx is done.
func createTable(ctx context.Context, db *sql.DB, table string, rows int) (func() error, error) {
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table)
		return err
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0)"); err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" (id) SELECT generate_series(1, $1::integer)", rows); err != nil {
		return nil, errors.Join(err, drop())
	}
	return drop, nil
}

// pair builds the variants of one comparison, or says why it is skipped.
func (b *bench) pair(ctx context.Context, key string) (*pair, string, error) {
	atLeast := func(r float64) bool { return r >= 0.97 }
	above := func(r float64) bool { return r > 1 }
	var (
		p    = &pair{key: key, interleaved: b.cfg.Interleave}
		base variantSpec
		cand variantSpec
	)
	switch key {
	case "sql":
		base = variantSpec{"A", "hand-written handler, own *sql.Tx", handWritten(b.db, b.q)}
		cand = variantSpec{"B", "scopedhttp Autocommit + scopedsql.Tx", scopedSQL(b.db, b.q)}
		p.target, p.met = "≥ 0.97", atLeast
	case "aa":
		base = variantSpec{"A1", "calibration: variant A", handWritten(b.db, b.q)}
		cand = variantSpec{"A2", "calibration: variant A again, on a second server", handWritten(b.db, b.q)}
		p.calibration = true
	case "mix":
		base = variantSpec{"C", "eager middleware, BEGIN on every request, 50% /health", eager(b.db, b.q)}
		cand = variantSpec{"D", "scopedhttp Autocommit (lazy), 50% /health", scopedSQL(b.db, b.q)}
		p.mix, p.target, p.met = true, "> 1", above
	case "pgx":
		if pgxSkipped != "" {
			return nil, pgxSkipped, nil
		}
		pg, err := openPgx(ctx, b.cfg, b.q)
		if err != nil {
			return nil, "", fmt.Errorf("pgx pool: %w", err)
		}
		b.pg = pg
		base = variantSpec{"E", "hand-written handler, pgxpool BeginTx", pg.hand}
		cand = variantSpec{"F", "scopedhttp Autocommit + scopedpgx.NewTx", pg.scoped}
		p.target, p.met = "≥ 0.97", atLeast
	default:
		return nil, "", fmt.Errorf("unknown comparison %q", key)
	}
	var err error
	if p.base, err = b.start(base); err != nil {
		return nil, "", err
	}
	if p.cand, err = b.start(cand); err != nil {
		return nil, "", err
	}
	return p, "", nil
}

type variantSpec struct {
	label, name string
	h           http.Handler
}

func (b *bench) start(s variantSpec) (*variant, error) {
	srv, err := startServer(s.h)
	if err != nil {
		return nil, err
	}
	b.servers = append(b.servers, srv)
	c := newClient(b.cfg.Clients)
	b.clients = append(b.clients, c)
	return &variant{label: s.label, name: s.name, srv: srv, client: c}, nil
}

// close drops the clients' connections, stops the servers and closes the
// pgx pool; the *sql.DB is closed by run. Clients first: a connection the
// transport dialed and never sent a request on is new to its server,
// which Shutdown waits 5 s for before taking it for idle.
func (b *bench) close() error {
	var errs []error
	for _, c := range b.clients {
		c.CloseIdleConnections()
	}
	for _, s := range b.servers {
		errs = append(errs, s.close())
	}
	if b.pg != nil {
		b.pg.close()
	}
	return errors.Join(errs...)
}

// compare runs a warm-up of each variant, then the rounds. By default
// the variants alternate: baseline then candidate in every round (-order
// abab), or in every other round (abba, the default), which cancels a
// steady drift of the machine's speed out of the median ratio. With
// -interleave both run in every round at once.
func (b *bench) compare(ctx context.Context, p *pair) error {
	vs := []*variant{p.base, p.cand}
	fmt.Fprintf(b.progress, "%s: %s (%s) vs %s (%s), %d rounds\n",
		p.key, p.base.label, p.base.name, p.cand.label, p.cand.name, b.cfg.Rounds)
	round := func(d time.Duration, requests int, n int) ([2]measurement, error) {
		var r [2]measurement
		if b.cfg.Interleave {
			ms, err := b.measure(ctx, vs, p.mix, d, requests)
			copy(r[:], ms)
			return r, err
		}
		order := []int{0, 1}
		if b.cfg.Order == "abba" && n%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			ms, err := b.measure(ctx, vs[i:i+1], p.mix, d, requests)
			if err != nil {
				return r, err
			}
			r[i] = ms[0]
		}
		return r, nil
	}
	if b.cfg.Warmup > 0 {
		r, err := round(b.cfg.Warmup, 0, 0)
		if err != nil {
			return err
		}
		p.warmup = r
	}
	for n := range b.cfg.Rounds {
		r, err := round(b.cfg.Duration, b.cfg.Requests, n)
		if err != nil {
			return err
		}
		p.rounds = append(p.rounds, r)
		fmt.Fprintf(b.progress, "  round %d: %s %.0f req/s %v CPU/req, %s %.0f req/s %v CPU/req, %s/%s %.3f\n", n+1,
			p.base.label, r[0].RPS(), r[0].CPUPerRequest().Round(time.Microsecond),
			p.cand.label, r[1].RPS(), r[1].CPUPerRequest().Round(time.Microsecond),
			p.cand.label, p.base.label, r[1].RPS()/r[0].RPS())
	}
	return nil
}

// measure runs one round of vs, one variant or two interleaved, and checks
// the database afterwards. With two, the growth of sum(n) is that of both
// and is recorded on the first, 0 on the second.
func (b *bench) measure(ctx context.Context, vs []*variant, mix bool, d time.Duration, requests int) ([]measurement, error) {
	before, err := b.sum(ctx)
	if err != nil {
		return nil, err
	}
	l := load{clients: b.cfg.Clients, rows: b.cfg.Rows, mix: mix, duration: d, requests: requests}
	for _, v := range vs {
		l.targets = append(l.targets, target{client: v.client, url: v.srv.url})
	}
	ms := l.run(ctx)
	if err := ctx.Err(); err != nil {
		return ms, fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	after, err := b.sum(ctx)
	if err != nil {
		return ms, err
	}
	ms[0].Delta = after - before
	inUse := b.waitIdle(ctx)
	for i := range ms {
		ms[i].InUse = inUse
	}
	return ms, nil
}

func (b *bench) sum(ctx context.Context) (int64, error) {
	var s int64
	err := b.db.QueryRowContext(ctx, "SELECT coalesce(sum(n), 0) FROM "+b.q.table).Scan(&s)
	return s, err
}

// waitIdle waits up to 2 s for every connection of both pools to be back,
// and returns how many are still checked out.
func (b *bench) waitIdle(ctx context.Context) int {
	inUse := func() int {
		n := b.db.Stats().InUse
		if b.pg != nil {
			n += b.pg.inUse()
		}
		return n
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := inUse()
		if n == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

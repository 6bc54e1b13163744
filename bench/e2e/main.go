package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	dsnEnv     = "SCOPED_TEST_POSTGRES_DSN"
	defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// config is one run of the harness.
type config struct {
	DSN      string
	Clients  int           // concurrent HTTP clients
	Rounds   int           // measured rounds per variant
	Duration time.Duration // length of a round, unless Requests > 0
	Requests int           // > 0: a round is this many requests instead
	Warmup   time.Duration // unmeasured round of each variant first; 0: none
	Rows     int           // rows in the table; ids are drawn among them
	Pool     int           // max open (and idle) connections of each pool
	Pairs    []string      // comparisons to run: sql, mix, pgx, aa
	Order    string        // abba or abab
	// Interleave drives both variants of a comparison at once, every
	// client alternating between them.
	Interleave bool
	Timeout    time.Duration // bound on the whole run
}

var allPairs = []string{"sql", "mix", "pgx", "aa"}

func main() {
	cfg, profile, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	if err := mainErr(cfg, profile); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
}

func mainErr(cfg config, profile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	env := environment(cfg)
	res, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		return err
	}
	env.loadAfter = loadAverage()
	writeReport(os.Stdout, cfg, env, res)
	if probs := res.problems(); len(probs) > 0 {
		return fmt.Errorf("%d failed check(s):\n  %s", len(probs), strings.Join(probs, "\n  "))
	}
	return nil
}

func parseFlags(args []string) (config, string, error) {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		dsn = defaultDSN
	}
	cfg := config{}
	fs.StringVar(&cfg.DSN, "dsn", dsn, "PostgreSQL DSN (default $"+dsnEnv+", else "+defaultDSN+")")
	fs.IntVar(&cfg.Clients, "clients", 8, "concurrent HTTP clients")
	fs.IntVar(&cfg.Rounds, "rounds", 20, "measured rounds of each variant")
	fs.DurationVar(&cfg.Duration, "duration", 500*time.Millisecond, "length of one round of one variant")
	fs.IntVar(&cfg.Requests, "requests", 0, "if > 0, a round is this many requests instead of -duration")
	fs.DurationVar(&cfg.Warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up round of each variant (0: none)")
	fs.IntVar(&cfg.Rows, "rows", 1000, "rows in the table; each request updates one at random")
	fs.IntVar(&cfg.Pool, "pool", 16, "max open and idle connections of the *sql.DB and of the pgxpool")
	pairs := fs.String("pairs", strings.Join(allPairs, ","), "comparisons to run, among "+strings.Join(allPairs, ","))
	fs.StringVar(&cfg.Order, "order", "abba", "order of the variants in the rounds: abba (A B, B A, A B, …) or abab (A B, A B, …)")
	fs.BoolVar(&cfg.Interleave, "interleave", false, "drive both variants at once in every round, each client alternating between them, and compare the time clients waited on each (for a busy machine)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "bound on the whole run")
	quick := fs.Bool("quick", false, "CI-sized run (about 25 s): -rounds 6 -duration 400ms -warmup 300ms unless set")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the whole process to this file")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["rounds"] {
			cfg.Rounds = 6
		}
		if !set["duration"] {
			cfg.Duration = 400 * time.Millisecond
		}
		if !set["warmup"] {
			cfg.Warmup = 300 * time.Millisecond
		}
	}
	cfg.Pairs = strings.Split(*pairs, ",")
	return cfg, *profile, cfg.validate()
}

func (c config) validate() error {
	var errs []error
	if c.Clients < 1 || c.Rounds < 1 || c.Rows < 1 || c.Pool < 1 {
		errs = append(errs, errors.New("-clients, -rounds, -rows and -pool must be at least 1"))
	}
	if c.Requests <= 0 && c.Duration <= 0 {
		errs = append(errs, errors.New("-duration must be positive unless -requests is set"))
	}
	if c.Warmup < 0 || c.Timeout <= 0 {
		errs = append(errs, errors.New("-warmup must not be negative, -timeout must be positive"))
	}
	if c.Order != "abba" && c.Order != "abab" {
		errs = append(errs, fmt.Errorf("-order: %q is neither abba nor abab", c.Order))
	}
	for _, p := range c.Pairs {
		if !slices.Contains(allPairs, p) {
			errs = append(errs, fmt.Errorf("-pairs: unknown comparison %q (known: %s)", p, strings.Join(allPairs, ",")))
		}
	}
	return errors.Join(errs...)
}

// commandLine is how this run was started, as a go run command, with any
// password in a DSN replaced by xxxxx.
func commandLine(args []string) string {
	parts := []string{"go", "run", "./bench/e2e"}
	for _, a := range args {
		a = redactArg(a)
		if strings.ContainsAny(a, " \t'\"$&;|<>()*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func redactArg(a string) string {
	prefix, v := "", a
	if i := strings.Index(a, "://"); i >= 0 {
		if j := strings.LastIndex(a[:i], "="); j >= 0 {
			prefix, v = a[:j+1], a[j+1:]
		}
	}
	return prefix + redactDSN(v)
}

var kvPassword = regexp.MustCompile(`(password\s*=\s*)('[^']*'|\S+)`)

func redactDSN(dsn string) string {
	if !strings.Contains(dsn, "://") {
		return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
	}
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

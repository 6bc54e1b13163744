package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// envInfo is how and where a run was made.
type envInfo struct {
	command    string
	dsn        string
	loadBefore string
	loadAfter  string
}

func environment(cfg config) envInfo {
	return envInfo{
		command:    commandLine(os.Args[1:]),
		dsn:        redactDSN(cfg.DSN),
		loadBefore: loadAverage(),
	}
}

// loadAverage returns the 1, 5 and 15 minute load averages, as uptime
// prints them, or "n/a" off Linux.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], ", ")
}

// writeReport prints the run as markdown.
func writeReport(w io.Writer, cfg config, env envInfo, res *result) {
	fmt.Fprintf(w, "## End-to-end: scoped against hand-written, PostgreSQL over loopback HTTP\n\n")
	fmt.Fprintf(w, "    %s\n\n", env.command)
	round := fmt.Sprintf("%v", cfg.Duration)
	if cfg.Requests > 0 {
		round = fmt.Sprintf("%d requests", cfg.Requests)
	}
	fmt.Fprintf(w, "%s %s/%s, GOMAXPROCS %d, PostgreSQL %s (%s); load average %s before, %s after.  \n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), res.PG, env.dsn, env.loadBefore, env.loadAfter)
	fmt.Fprintf(w, "%d clients, pool of %d connections, %d rows; %d rounds of %s per variant, alternating, after a %v warm-up of each.\n\n",
		cfg.Clients, cfg.Pool, cfg.Rows, cfg.Rounds, round, cfg.Warmup)

	fmt.Fprintf(w, "| variant | median req/s | ratio | rounds | CPU µs/req |\n|---|---:|---:|---:|---:|\n")
	for _, p := range res.Pairs {
		ratio := median(p.ratios())
		var verdict string
		switch {
		case p.calibration:
			verdict = "calibration: identical variants, so the distance from 1 is this run's noise"
		case p.met(ratio):
			verdict = "target " + p.target + ": met"
		default:
			verdict = "target " + p.target + ": not met"
		}
		fmt.Fprintf(w, "| %s: %s | %.0f | 1 (baseline) | %d | %.0f |\n", p.base.label, p.base.name,
			median(p.rps(0)), len(p.rounds), median(p.cpu(0)))
		fmt.Fprintf(w, "| %s: %s | %.0f | %.3f %s/%s (%s) | %d | %.0f |\n", p.cand.label, p.cand.name,
			median(p.rps(1)), ratio, p.cand.label, p.base.label, verdict, len(p.rounds), median(p.cpu(1)))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "req/s counts requests answered 200. ratio: the median over rounds of candidate/baseline measured in the same round. "+
		"CPU µs/req: CPU time of the whole process (servers, handlers, load generator; not PostgreSQL) per request, median over rounds.\n")
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "%s.\n", s)
	}
	for _, p := range res.Pairs {
		writeRounds(w, p)
	}
	fmt.Fprintln(w)
	if probs := res.problems(); len(probs) > 0 {
		fmt.Fprintf(w, "**%d failed check(s):**\n\n", len(probs))
		for _, s := range probs {
			fmt.Fprintf(w, "- %s\n", s)
		}
	} else {
		fmt.Fprintf(w, "Checks passed for every run, warm-ups included: every request answered 200, sum(n) grew by exactly the number of updates, no connection left in use.\n")
	}
}

func writeRounds(w io.Writer, p *pair) {
	b, c := p.base.label, p.cand.label
	rs := p.ratios()
	lo, hi := spread(rs)
	fmt.Fprintf(w, "\n%s/%s: per-round ratios from %.3f to %.3f; ratio of the medians %.3f.\n\n", c, b, lo, hi, median(p.rps(1))/median(p.rps(0)))
	fmt.Fprintf(w, "| round | %s req/s | %s req/s | %s/%s | %s CPU µs/req | %s CPU µs/req |\n|---:|---:|---:|---:|---:|---:|\n", b, c, c, b, b, c)
	cb, cc := p.cpu(0), p.cpu(1)
	for i, r := range p.rounds {
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %.3f | %.0f | %.0f |\n", i+1, r[0].RPS(), r[1].RPS(), rs[i], cb[i], cc[i])
	}
}

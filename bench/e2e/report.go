package main

import (
	"fmt"
	"io"
	"math"
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
	if cfg.Interleave {
		fmt.Fprintf(w, "%d clients, pool of %d connections, %d rows; %d rounds of %s, both variants of a comparison at once "+
			"(every client alternating between them), after a %v warm-up.\n\n",
			cfg.Clients, cfg.Pool, cfg.Rows, cfg.Rounds, round, cfg.Warmup)
	} else {
		fmt.Fprintf(w, "%d clients, pool of %d connections, %d rows; %d rounds of %s per variant, order %s, after a %v warm-up of each.\n\n",
			cfg.Clients, cfg.Pool, cfg.Rows, cfg.Rounds, round, strings.ToUpper(cfg.Order), cfg.Warmup)
	}

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
		fmt.Fprintf(w, "| %s: %s | %.0f | 1 (baseline) | %d | %s |\n", p.base.label, p.base.name,
			median(p.rps(0)), len(p.rounds), micros(median(p.cpu(0))))
		fmt.Fprintf(w, "| %s: %s | %.0f | %.3f %s/%s (%s) | %d | %s |\n", p.cand.label, p.cand.name,
			median(p.rps(1)), ratio, p.cand.label, p.base.label, verdict, len(p.rounds), micros(median(p.cpu(1))))
	}
	fmt.Fprintln(w)
	if cfg.Interleave {
		fmt.Fprintf(w, "req/s: requests answered 200 per second of the clients' time spent waiting on the variant "+
			"(clients × answered / total latency), the throughput the variant would have alone at that latency. ")
	} else {
		fmt.Fprintf(w, "req/s: requests answered 200 per second. ")
	}
	fmt.Fprintf(w, "ratio: the median over rounds of candidate/baseline measured in the same round. "+
		"CPU µs/req: CPU time of the whole process (servers, handlers, load generator; not PostgreSQL) per request, median over rounds "+
		"(n/a when both variants run at once).\n")
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
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %.3f | %s | %s |\n", i+1, r[0].RPS(), r[1].RPS(), rs[i], micros(cb[i]), micros(cc[i]))
	}
}

// micros formats a CPU time per request in µs, "n/a" for none measured.
func micros(us float64) string {
	if us <= 0 || math.IsNaN(us) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", us)
}

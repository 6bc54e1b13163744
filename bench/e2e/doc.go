// Command e2e measures what scoped costs, end to end, on a real PostgreSQL
// server: HTTP over loopback, database/sql or pgx, a real transaction per
// request.
//
// Every variant serves the same endpoint, POST /bump?id=N, which reads one
// row and updates it in one transaction:
//
//	SELECT n FROM <table> WHERE id = $1 FOR UPDATE
//	UPDATE <table> SET n = $2 WHERE id = $1   -- $2 = n+1
//
// with ids drawn at random among -rows rows (1000 by default) so that the
// clients rarely wait on each other's row locks. The comparisons, each a
// warm-up of both variants then -rounds rounds in which both run one after
// the other, are:
//
//   - sql: (A) a hand-written handler that begins, commits (or rolls back)
//     its own *sql.Tx, against (B) scopedhttp.Middleware in Autocommit mode
//     with scoped.New(scopedsql.Tx(db, nil)) bound to the request, the
//     handler calling scoped.Current[*sql.Tx]. Target: B/A ≥ 0.97.
//   - mix: every client alternates POST /bump with GET /health, which
//     never touches the database. (C) a hand-rolled middleware that begins
//     a transaction for every request, puts it in the context and commits
//     it after the handler, against (D) scopedhttp's lazy scope, which
//     begins one only for the requests that ask. Target: D/C > 1.
//   - pgx: (E) a hand-written handler on a pgxpool.Pool (BeginTx, Commit)
//     against (F) scopedhttp Autocommit with scopedpgx.NewTx. Left out,
//     with a note in the report, when the program is built with
//     -tags noscopedpgx (for a tree in which scopedpgx does not compile).
//   - aa: calibration, (A1) variant A against (A2) variant A on a second
//     server. The two are identical, so how far A2/A1 is from 1 is the
//     noise of the run: differences smaller than that mean nothing.
//
// Each variant has its own http.Server on 127.0.0.1 and its own keep-alive
// client; the database/sql variants share one *sql.DB and the pgx variants
// one pgxpool.Pool, both limited to -pool connections, and only one
// variant runs at a time. The load generator (-clients goroutines, each
// sending its next request when the last is answered) runs in the same
// process as the servers, on the same cores as PostgreSQL: the figures are
// relative, to be compared within one run.
//
// By default the rounds run in the order A B, B A, A B, … (-order abba),
// which keeps a steady drift of the machine's speed out of the ratio;
// -order abab runs A B, A B, …. Rounds are short (500 ms) and many (20)
// because on a shared machine the speed changes from one second to the
// next: two runs close in time see the same machine. -interleave goes
// further: in every round both variants run at once, each client
// alternating between them, so both see the same machine at the same
// instants; a variant's req/s is then the throughput at the latency it
// showed (clients × requests answered / time the clients waited on it),
// and the CPU per request, shared, is not reported.
//
// The report, printed to stdout as markdown, gives for each variant the
// median throughput over the rounds (requests answered 200 per second),
// the median over the rounds of candidate/baseline measured in the same
// round, and the median CPU time per request of this process (servers,
// handlers and load generator; PostgreSQL excluded); then every round, the
// command line, the Go and PostgreSQL versions and the load average before
// and after. Progress goes to stderr.
//
// Every run is also checked, warm-ups included: every request must be
// answered 200, the sum of the counters must grow by exactly the number of
// requests that updated one, and no connection may stay checked out of
// either pool afterwards. A failed check is reported and makes the exit
// status 1.
//
// # Running
//
//	go run ./bench/e2e -quick      # about 25 s, for CI
//	go run ./bench/e2e             # the recorded run, about 1.5 min
//	go run ./bench/e2e -dsn postgres://... -pairs sql -rounds 40 -duration 1s
//
// The DSN defaults to $SCOPED_TEST_POSTGRES_DSN, else
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. The program
// creates its own table (scoped_e2e_<random>) and drops it when it ends,
// also on SIGINT or SIGTERM or when -timeout (10 min) passes. -requests N
// makes every round N requests instead of -duration. -cpuprofile writes a
// CPU profile of the whole process.
package main

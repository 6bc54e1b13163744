// Package scopedotel traces and measures scoped sessions with
// OpenTelemetry, built on the core's lifecycle events
// ([scoped.WithEventHook]).
//
//	txs := scopedsql.NewTx(db, nil, scoped.WithName("users"),
//		scopedotel.Instrument(scopedotel.WithDBSystem("postgresql")))
//	mw := scopedhttp.Middleware(scopedhttp.Bind(txs))
//	http.ListenAndServe(":8080", otelhttp.NewHandler(mw(mux), "api"))
//
// Every session gets a span from its factory call until it has ended, a
// child of the span in the scope's context (under otelhttp, the request's),
// named "scoped <name>" ("scoped savepoint <name>" for a nested unit), with
// scoped.outcome (committed, rolled_back, closed, failed, create_failed)
// and, on failure, error.type and status Error. A session whose factory
// says which server it runs on ([scoped.Event.Route]: scopedpgx with
// replicas, "replica 1" or "primary (replica 1 lags)") carries it as
// scoped.route, from the span's start (samplers see it) and, at its end,
// where the session ended up, which may differ: scopedpgx sends BEGIN with
// the first statement and may move the unit to the primary then. Metrics:
// scoped.session.created, scoped.session.ended, scoped.session.create_failures,
// scoped.session.count (open now: a leak never returns to 0) and
// scoped.session.commit.duration.
//
// [TraceHook] wraps a scoped.OnCommit or OnRollback hook so that its run is
// a span under the span where it was registered, with its outcome.
//
// The providers default to the global ones ([WithTracerProvider],
// [WithMeterProvider]). A ScopedSession has one event hook: to run one of
// your own too, call [Hook] and yours from one function.
//
// The guide: docs/observability.md in the repository.
package scopedotel

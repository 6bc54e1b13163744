// Package scopedotel traces and measures scoped sessions with
// OpenTelemetry, built on the core's lifecycle events
// ([scoped.WithEventHook]).
//
// # Usage
//
//	users := scoped.New(scopedsql.Tx(db, nil),
//		scopedotel.Instrument(scopedotel.WithDBSystem("postgresql")))
//	http.ListenAndServe(":8080", otelhttp.NewHandler(scopedhttp.Middleware(scopedhttp.Bind(users))(mux), "api"))
//
// The providers default to the global ones ([WithTracerProvider] and
// [WithMeterProvider] choose others). A ScopedSession has one event hook:
// to run one of your own too, call [Hook] and yours from one function
// given to [scoped.WithEventHook].
//
// # Spans
//
// Every session gets a span from the moment its factory is called until
// it has ended (commit or rollback, and close). The span is a child of
// the span in the scope's context: under otelhttp, the request's span;
// for a child scope ([scoped.Run] inside a scope), the span current where
// the child scope began. It is named "scoped <session>" ("scoped
// savepoint <session>" for a child scope's savepoint), <session> being
// the ScopedSession's name ([scoped.WithName]), and has kind Internal: the
// statements run in it are the client spans (otelsql, otelpgx), and a
// Client span as long as a request would skew a backend's database
// timings. Attributes, after the database conventions where they apply:
//
//	db.system.name         [WithDBSystem], when given
//	scoped.session.name    the ScopedSession's name
//	scoped.session.nested  a child scope's savepoint
//	scoped.outcome         committed, rolled_back, closed, failed; create_failed
//	scoped.commit          the end was asked to commit
//	error.type             failed only
//
// The span does not enter the session's context (the core's event hook
// cannot change it), so spans of the statements run in the session, from
// otelsql or otelpgx, are its siblings under the request's span, not its
// children.
//
// A failed end sets the span's status to Error with the error, recorded
// as an exception event. A factory that fails or panics (no session) gets
// a span as long as the factory took, with outcome create_failed and
// status Error: a BEGIN that waited for the pool shows how long it waited.
//
// # Metrics
//
//	scoped.session.created         Counter {session}
//	scoped.session.ended           Counter {session}, by scoped.outcome (and error.type)
//	scoped.session.create_failures Counter {session}, by error.type
//	scoped.session.count           UpDownCounter {session}: created, not yet ended
//	scoped.session.commit.duration Histogram s: ending by a commit, by scoped.outcome
//
// All carry db.system.name, scoped.session.name, scoped.session.nested
// and [WithAttributes]. Savepoints count as sessions with
// scoped.session.nested=true; filter them out to match
// [scoped.ScopedSession.Stats]. The commit histogram uses the buckets the
// conventions advise for database operation durations.
//
// # Sessions that never end
//
// A session in a scope that is never ended (begun on
// context.Background() and never removed) never sends its end event.
// scoped.session.count keeps counting it, which is how such a leak shows;
// its span, held until the end, is bounded by [WithMaxOpenSpans]: past
// the bound new sessions get no span until others end. Unsampled spans
// are not held at all.
package scopedotel

package scopedotel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedotel"
)

// exampleTx stands for a database transaction (pgx.Tx, *sql.Tx).
type exampleTx struct{}

func (exampleTx) Commit(context.Context) error   { return nil }
func (exampleTx) Rollback(context.Context) error { return nil }

// scopedhttp's middleware goes inside otelhttp's handler, so that the
// request's span is in the scope's context and each session's span is its
// child.
func Example_otelhttp() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	users := scoped.New(func(context.Context) (*exampleTx, error) { return &exampleTx{}, nil },
		scoped.WithName("users"),
		scopedotel.Instrument(scopedotel.WithTracerProvider(tp), scopedotel.WithDBSystem("postgresql")))

	mux := http.NewServeMux()
	mux.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) {
		if _, err := users.Current(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(users))
	handler := otelhttp.NewHandler(mw(mux), "POST /users", otelhttp.WithTracerProvider(tp))

	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/users", nil))
	fmt.Println("status", rec.Code)

	spans := exp.GetSpans()
	names := map[string]string{}
	for _, s := range spans {
		names[s.SpanContext.SpanID().String()] = s.Name
	}
	for _, s := range spans {
		line := s.Name
		if parent, ok := names[s.Parent.SpanID().String()]; ok {
			line += " (child of " + parent + ")"
		}
		for _, kv := range s.Attributes {
			if kv.Key == "scoped.outcome" || kv.Key == "db.system.name" {
				line += " " + string(kv.Key) + "=" + kv.Value.Emit()
			}
		}
		fmt.Println(line)
	}
	// Output:
	// status 201
	// scoped users (child of POST /users) db.system.name=postgresql scoped.outcome=committed
	// POST /users
}

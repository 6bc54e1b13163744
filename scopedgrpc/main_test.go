package scopedgrpc_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

// bound is how long a test waits for something that must happen before it
// fails instead of hanging. It is never a timing assertion.
const bound = 10 * time.Second

// health is a grpc_health_v1 server whose two methods, Check (unary) and
// Watch (server streaming), run the test's functions.
type health struct {
	grpc_health_v1.UnimplementedHealthServer
	check func(ctx context.Context) error
	watch func(ctx context.Context, send func() error) error
}

func (h *health) Check(ctx context.Context, _ *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	if err := h.check(ctx); err != nil {
		return nil, err
	}
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

func (h *health) Watch(_ *grpc_health_v1.HealthCheckRequest, s grpc_health_v1.Health_WatchServer) error {
	return h.watch(s.Context(), func() error {
		return s.Send(&grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING})
	})
}

// serve starts a grpc-go server with opts on 127.0.0.1 and returns a
// client connected to it; both are stopped when t ends.
func serve(t testing.TB, h *health, opts ...grpc.ServerOption) grpc_health_v1.HealthClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	grpc_health_v1.RegisterHealthServer(srv, h)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	conn, err := grpc.Dial(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return grpc_health_v1.NewHealthClient(conn)
}

// openDB opens the PostgreSQL test database and a fresh table whose
// deferred constraint trigger fails the COMMIT of a transaction that
// inserted a negative id with SQLSTATE 40001 (serialization_failure), and
// one that inserted an id of 1,000,000 or more with 23514
// (check_violation): real commit failures, on demand.
func openDB(t testing.TB) (*sql.DB, string) {
	t.Helper()
	srv := dbtest.Postgres(t)
	db, err := sql.Open(srv.Driver, srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	table := dbtest.CreateIDTable(t, db, "scopedgrpc")
	ddl := fmt.Sprintf(`
CREATE FUNCTION %[1]s_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id < 0 THEN
		RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = 'serialization_failure';
	END IF;
	IF NEW.id >= 1000000 THEN
		RAISE EXCEPTION 'injected commit failure' USING ERRCODE = 'check_violation';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER %[1]s_check AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_check();`, table)
	if _, err := db.ExecContext(dbtest.Ctx(t), ddl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs before dbtest drops the table; CASCADE takes the trigger.
		ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP FUNCTION "+table+"_check() CASCADE"); err != nil {
			t.Errorf("drop function: %v", err)
		}
	})
	return db, table
}

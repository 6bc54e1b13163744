package scopedgrpc_test

import (
	"context"
	"database/sql"
	"net"
	"testing"

	_ "github.com/lib/pq"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

// bound is how long a test waits for something that must happen before it
// fails instead of hanging: the shared test kit's.
const bound = testkit.Bound

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
// COMMITs fail on demand (dbtest.CreateCommitFailureTable).
func openDB(t testing.TB) (*sql.DB, string) {
	t.Helper()
	srv := dbtest.Postgres(t)
	db, err := sql.Open(srv.Driver, srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	table := dbtest.CreateCommitFailureTable(t, db, "scopedgrpc")
	return db, table
}

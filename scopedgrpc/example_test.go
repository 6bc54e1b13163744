package scopedgrpc_test

import (
	"context"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedgrpc"
)

// A unit of work that prints how it ends, standing in for a *sql.Tx.
type unit struct{ writes []string }

// registry answers Check for the services it knows, recording each
// lookup in the call's unit of work.
type registry struct {
	grpc_health_v1.UnimplementedHealthServer
	units *scoped.ScopedSession[*unit]
}

func (r registry) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	u, err := r.units.Current(ctx)
	if err != nil {
		return nil, err
	}
	u.writes = append(u.writes, "lookup "+req.Service)
	if req.Service != "users" {
		return nil, status.Errorf(codes.NotFound, "no service %q", req.Service)
	}
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

// Autocommit commits a call's unit of work when the handler returns no
// error, before the response is sent, and rolls it back otherwise.
func ExampleUnaryServerInterceptor() {
	units := scoped.New(func(context.Context) (*unit, error) { return &unit{}, nil },
		scoped.WithCommit(func(_ context.Context, u *unit) error {
			fmt.Println("server: commit", strings.Join(u.writes, ", "))
			return nil
		}),
		scoped.WithRollback(func(_ context.Context, u *unit) error {
			fmt.Println("server: roll back", strings.Join(u.writes, ", "))
			return nil
		}))

	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(
		scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
	)))
	grpc_health_v1.RegisterHealthServer(srv, registry{units: units})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, err := grpc.Dial(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := grpc_health_v1.NewHealthClient(conn)
	for _, name := range []string{"users", "orders"} {
		resp, err := client.Check(context.Background(), &grpc_health_v1.HealthCheckRequest{Service: name})
		if err != nil {
			fmt.Println("client:", status.Code(err))
			continue
		}
		fmt.Println("client:", resp.Status)
	}
	// Output:
	// server: commit lookup users
	// client: SERVING
	// server: roll back lookup orders
	// client: NotFound
}

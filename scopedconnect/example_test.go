package scopedconnect_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedconnect"
)

// A unit of work that prints how it ends, standing in for a *sql.Tx.
type unit struct{ writes []string }

// Autocommit commits a call's unit of work when the handler returns no
// error, and rolls it back otherwise, whichever protocol the client
// speaks: here gRPC-Web, which answers HTTP 200 even to the failed call.
func ExampleNewInterceptor() {
	units := scoped.New(func(context.Context) (*unit, error) { return &unit{}, nil },
		scoped.WithCommit(func(_ context.Context, u *unit) error {
			fmt.Println("server: commit", strings.Join(u.writes, ", "))
			return nil
		}),
		scoped.WithRollback(func(_ context.Context, u *unit) error {
			fmt.Println("server: roll back", strings.Join(u.writes, ", "))
			return nil
		}))

	mux := http.NewServeMux()
	mux.Handle(checkProcedure, connect.NewUnaryHandler(checkProcedure,
		func(ctx context.Context, req *connect.Request[checkReq]) (*connect.Response[checkResp], error) {
			u, err := units.Current(ctx)
			if err != nil {
				return nil, err
			}
			u.writes = append(u.writes, "lookup "+req.Msg.Service)
			if req.Msg.Service != "users" {
				return nil, connect.NewError(connect.CodeNotFound, errors.New("no such service"))
			}
			return connect.NewResponse(&checkResp{Status: grpc_health_v1.HealthCheckResponse_SERVING}), nil
		},
		connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit))),
	))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()

	client := connect.NewClient[checkReq, checkResp](http.DefaultClient, "http://"+lis.Addr().String()+checkProcedure,
		connect.WithGRPCWeb())
	for _, name := range []string{"users", "orders"} {
		resp, err := client.CallUnary(context.Background(), connect.NewRequest(&checkReq{Service: name}))
		if err != nil {
			fmt.Println("client:", connect.CodeOf(err))
			continue
		}
		fmt.Println("client:", resp.Msg.Status)
	}
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// server: commit lookup users
	// client: SERVING
	// server: roll back lookup orders
	// client: not_found
}

// With Handler, an OnCommit hook runs once the client has its answer:
// this one waits for the client to print it, which would deadlock if the
// hook ran before the response was sent.
func ExampleHandler() {
	answered, hooked := make(chan struct{}), make(chan struct{})
	path, handler := checkProcedure, connect.NewUnaryHandler(checkProcedure,
		func(ctx context.Context, req *connect.Request[checkReq]) (*connect.Response[checkResp], error) {
			_ = scoped.OnCommit(ctx, func(context.Context) {
				<-answered
				fmt.Println("hook: drop the cache entry of", req.Msg.Service)
				close(hooked)
			})
			return connect.NewResponse(&checkResp{Status: grpc_health_v1.HealthCheckResponse_SERVING}), nil
		},
		connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit))),
	)
	mux := http.NewServeMux()
	mux.Handle(path, scopedconnect.Handler(handler))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()

	client := connect.NewClient[checkReq, checkResp](http.DefaultClient, "http://"+lis.Addr().String()+checkProcedure)
	resp, err := client.CallUnary(context.Background(), connect.NewRequest(&checkReq{Service: "users"}))
	if err != nil {
		panic(err)
	}
	fmt.Println("client:", resp.Msg.Status)
	close(answered)
	<-hooked
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// client: SERVING
	// hook: drop the cache entry of users
}

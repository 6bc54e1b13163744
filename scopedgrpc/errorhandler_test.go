package scopedgrpc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedgrpc"
	"github.com/go-scoped/scoped/scopedsql"
)

// DefaultErrorHandler answers Aborted for a commit that saved nothing and
// failed with what scopedsql.Retryable accepts (serialization failures and
// deadlocks of every engine it knows), Internal for anything else.
func TestDefaultErrorHandlerAbortsWhatRetryableAccepts(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "40P01"}, true},
		{&pq.Error{Code: "40001"}, true},
		{&mysql.MySQLError{Number: 1213}, true},
		{fmt.Errorf("commit: %w", &pgconn.PgError{Code: "40001"}), true},
		{errors.Join(errors.New("close"), fmt.Errorf("x: %w", &mysql.MySQLError{Number: 1213})), true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&mysql.MySQLError{Number: 1062}, false},
		{errors.New("40001"), false},
	}
	for _, tt := range tests {
		if got := scopedsql.Retryable(tt.err); got != tt.want {
			t.Errorf("scopedsql.Retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
		err := scopedgrpc.DefaultErrorHandler(context.Background(), fmt.Errorf("%w: %w", scoped.ErrNotCommitted, tt.err))
		if got := status.Code(err) == codes.Aborted; got != tt.want {
			t.Errorf("DefaultErrorHandler(%v) = %v, want Aborted: %v", tt.err, err, tt.want)
		}
	}
}

// A commit that fails with an error the WithRetry classifier accepts, on
// the last run, is answered Aborted by DefaultErrorHandler even when
// scopedsql.Retryable does not know the error; without WithRetry it is
// Internal. Streams (never run again) answer the same.
func TestDefaultErrorHandlerUsesTheRetryClassifier(t *testing.T) {
	conflict := errors.New("optimistic lock lost")
	isConflict := func(err error) bool { return errors.Is(err, conflict) }
	for _, tt := range []struct {
		name string
		opts []scopedgrpc.Option
		want codes.Code
	}{
		{"WithRetry", []scopedgrpc.Option{scopedgrpc.WithRetry(1, isConflict)}, codes.Aborted},
		{"without", nil, codes.Internal},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sessions, f := fakeSessions(conflict)
			opts := append([]scopedgrpc.Option{scopedgrpc.WithCommitMode(scopedgrpc.Autocommit)}, tt.opts...)
			client := serve(t, &health{
				check: func(ctx context.Context) error { _, err := sessions.Current(ctx); return err },
				watch: func(ctx context.Context, _ func() error) error { _, err := sessions.Current(ctx); return err },
			}, grpc.UnaryInterceptor(scopedgrpc.UnaryServerInterceptor(opts...)),
				grpc.StreamInterceptor(scopedgrpc.StreamServerInterceptor(opts...)))
			_, err := client.Check(context.Background(), &grpc_health_v1.HealthCheckRequest{})
			if st := status.Convert(err); st.Code() != tt.want || strings.Contains(st.Message(), conflict.Error()) {
				t.Errorf("unary: client got %v, want %v without the database's error", err, tt.want)
			}
			stream, err := client.Watch(context.Background(), &grpc_health_v1.HealthCheckRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != tt.want {
				t.Errorf("stream: client got %v, want %v", err, tt.want)
			}
			if f.commits != 2 {
				t.Errorf("commits = %d, want 2 (one run each)", f.commits)
			}
		})
	}
}

func TestDefaultErrorHandler(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	serial := &pgconn.PgError{Code: "40001"}
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		code codes.Code
		msg  string
	}{
		{"serialization", context.Background(), fmt.Errorf("%w: %w", scoped.ErrNotCommitted, serial), codes.Aborted, "not saved; retry"},
		{"deadlock partly committed", context.Background(), fmt.Errorf("%w: %w", scoped.ErrPartiallyCommitted, serial), codes.Internal, "part of the call's changes were saved"},
		{"unknown", context.Background(), fmt.Errorf("lost: %w", scoped.ErrCommitUnknown), codes.Internal, "may have been saved"},
		{"deadline", expired, errors.New("commit: i/o timeout"), codes.DeadlineExceeded, "not saved"},
		{"other", context.Background(), errors.New("disk full"), codes.Internal, "not saved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(scopedgrpc.DefaultErrorHandler(tt.ctx, tt.err))
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
			if strings.Contains(st.Message(), "disk full") {
				t.Errorf("message %q leaks the database's error to the client", st.Message())
			}
		})
	}
}

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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedgrpc"
)

func TestIsSerializationFailure(t *testing.T) {
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
		{nil, false},
	}
	for _, tt := range tests {
		if got := scopedgrpc.IsSerializationFailure(tt.err); got != tt.want {
			t.Errorf("IsSerializationFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
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

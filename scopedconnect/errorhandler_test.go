package scopedconnect_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedconnect"
)

func TestIsSerializationFailure(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&pq.Error{Code: "40001"}, true},
		{&pq.Error{Code: "40P01"}, true},
		{&mysql.MySQLError{Number: 1213}, true},
		{fmt.Errorf("commit: %w", &pq.Error{Code: "40001"}), true},
		{errors.Join(errors.New("close"), fmt.Errorf("x: %w", &mysql.MySQLError{Number: 1213})), true},
		{&pq.Error{Code: "23505"}, false},
		{&mysql.MySQLError{Number: 1062}, false},
		{errors.New("40001"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := scopedconnect.IsSerializationFailure(tt.err); got != tt.want {
			t.Errorf("IsSerializationFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestDefaultErrorHandler(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	serial := &pq.Error{Code: "40001"}
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		code connect.Code
		msg  string
	}{
		{"serialization", context.Background(), fmt.Errorf("%w: %w", scoped.ErrNotCommitted, serial), connect.CodeAborted, "not saved; retry"},
		{"deadlock partly committed", context.Background(), fmt.Errorf("%w: %w", scoped.ErrPartiallyCommitted, serial), connect.CodeInternal, "part of the call's changes were saved"},
		{"unknown", context.Background(), fmt.Errorf("lost: %w", scoped.ErrCommitUnknown), connect.CodeInternal, "may have been saved"},
		{"deadline", expired, errors.New("commit: i/o timeout"), connect.CodeDeadlineExceeded, "not saved"},
		{"other", context.Background(), errors.New("disk full"), connect.CodeInternal, "not saved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ce *connect.Error
			if !errors.As(scopedconnect.DefaultErrorHandler(tt.ctx, tt.err), &ce) {
				t.Fatal("not a *connect.Error")
			}
			if ce.Code() != tt.code || !strings.Contains(ce.Message(), tt.msg) {
				t.Errorf("got %v %q, want %v containing %q", ce.Code(), ce.Message(), tt.code, tt.msg)
			}
			if strings.Contains(ce.Message(), "disk full") {
				t.Errorf("message %q leaks the database's error to the client", ce.Message())
			}
		})
	}
}

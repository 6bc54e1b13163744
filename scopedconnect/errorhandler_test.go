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
	"github.com/go-scoped/scoped/scopedsql"
)

// DefaultErrorHandler answers CodeAborted for a commit that saved nothing
// and failed with what scopedsql.Retryable accepts (serialization failures
// and deadlocks of every engine it knows), CodeInternal for anything else.
func TestDefaultErrorHandlerAbortsWhatRetryableAccepts(t *testing.T) {
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
	}
	for _, tt := range tests {
		if got := scopedsql.Retryable(tt.err); got != tt.want {
			t.Errorf("scopedsql.Retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
		err := scopedconnect.DefaultErrorHandler(context.Background(), fmt.Errorf("%w: %w", scoped.ErrNotCommitted, tt.err))
		if got := connect.CodeOf(err) == connect.CodeAborted; got != tt.want {
			t.Errorf("DefaultErrorHandler(%v) = %v, want CodeAborted: %v", tt.err, err, tt.want)
		}
	}
}

// A commit that fails with an error the WithRetry classifier accepts, on
// the last run, is answered CodeAborted by DefaultErrorHandler even when
// scopedsql.Retryable does not know the error; without WithRetry it is
// CodeInternal. Streams (never run again) answer the same.
func TestDefaultErrorHandlerUsesTheRetryClassifier(t *testing.T) {
	conflict := errors.New("optimistic lock lost")
	isConflict := func(err error) bool { return errors.Is(err, conflict) }
	for _, tt := range []struct {
		name string
		opts []scopedconnect.Option
		want connect.Code
	}{
		{"WithRetry", []scopedconnect.Option{scopedconnect.WithRetry(1, isConflict)}, connect.CodeAborted},
		{"without", nil, connect.CodeInternal},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sessions, _ := fakeSessions(conflict)
			opts := append([]scopedconnect.Option{scopedconnect.WithCommitMode(scopedconnect.Autocommit)}, tt.opts...)
			url := serve(t, &service{
				check: func(ctx context.Context, _ string) error { _, err := sessions.Current(ctx); return err },
				watch: func(ctx context.Context, _ string, _ func() error) error { _, err := sessions.Current(ctx); return err },
			}, connect.WithInterceptors(scopedconnect.NewInterceptor(opts...)))
			for _, c := range clients(t, url) {
				if code, msg := c.check(context.Background(), ""); connect.Code(code) != tt.want || strings.Contains(msg, conflict.Error()) {
					t.Errorf("%s: unary: client got %v %q, want %v without the database's error", c.name, connect.Code(code), msg, tt.want)
				}
				if _, code, msg := c.watch(context.Background(), ""); connect.Code(code) != tt.want {
					t.Errorf("%s: stream: client got %v %q, want %v", c.name, connect.Code(code), msg, tt.want)
				}
			}
		})
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

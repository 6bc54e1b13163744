package scopedsql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

type sqlState string

func (e sqlState) Error() string    { return "SQLSTATE " + string(e) }
func (e sqlState) SQLState() string { return string(e) }

func TestConnectionLostClassifiesConnectionErrorsOnly(t *testing.T) {
	t.Parallel()
	opErr := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	for err, want := range map[error]bool{
		driver.ErrBadConn:                        true,
		io.EOF:                                   true,
		fmt.Errorf("x: %w", io.ErrUnexpectedEOF): true,
		opErr:                                    true,
		sqlState("57P01"):                        true,
		sqlState("08006"):                        true,
		errors.New("invalid connection"):         true,
		errors.Join(errors.New("a"), opErr):      true,
		sqlState("40001"):                        false,
		sqlState("23505"):                        false,
		context.Canceled:                         false,
		context.DeadlineExceeded:                 false,
		errors.New("invalid connection string"):  false,
	} {
		if got := connectionLost(err); got != want {
			t.Errorf("connectionLost(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestTimedOutIsForNetworkTimeoutsOnly(t *testing.T) {
	t.Parallel()
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	if !timedOut(fmt.Errorf("begin: %w", timeout)) {
		t.Error("a dial timeout is not timedOut")
	}
	if timedOut(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}) || timedOut(io.EOF) {
		t.Error("a reset or EOF is timedOut")
	}
}

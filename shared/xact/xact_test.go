package xact

import (
	"errors"
	"fmt"
	"testing"
)

func TestVerdicts(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, c := range []struct {
		status       *string
		checkpointed bool
		want         Verdict
	}{
		{s("committed"), false, Committed},
		// After a crash the id may be another transaction's: not proof.
		{s("committed"), true, Unknown},
		{s("aborted"), false, Aborted},
		{s("aborted"), true, Aborted},
		{s("in progress"), false, Pending},
		{s("in progress"), true, Pending},
		{nil, false, Unknown},
	} {
		got, why := Of(c.status, c.checkpointed)
		if got != c.want {
			t.Errorf("Of(%v, %v) = %v, want %v", c.status, c.checkpointed, got, c.want)
		}
		if (got == Unknown) != (why != "") {
			t.Errorf("Of(%v, %v): reason %q for verdict %v", c.status, c.checkpointed, why, got)
		}
	}
}

type stateErr struct{ code, msg string }

func (e stateErr) Error() string    { return e.msg }
func (e stateErr) SQLState() string { return e.code }

func TestForgotten(t *testing.T) {
	future := stateErr{"22023", "ERROR: transaction ID 725 is in the future (SQLSTATE 22023)"}
	if !Forgotten(fmt.Errorf("wrapped: %w", future)) {
		t.Error("an id in the future is not forgotten")
	}
	for _, err := range []error{
		stateErr{"22023", "invalid input syntax for type xid8"},
		stateErr{"57P01", "terminating connection due to administrator command"},
		errors.New("transaction ID 725 is in the future"), // no SQLSTATE: not the server's word
	} {
		if Forgotten(err) {
			t.Errorf("Forgotten(%v) = true", err)
		}
	}
}

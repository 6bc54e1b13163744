// Package readafter is the read-your-writes state that scopedpgx and
// scopedsql share: a [Position] in PostgreSQL's write-ahead log, the
// position a request's units must read after and raise by their commits,
// carried in its context ([With], [CellOf]), and the HTTP cookie that
// carries it from one request of a client to the next ([Cookie]). One
// context key and one cookie format, so that a position one driver's
// units yield is the one the other's read after, in the same request or
// the next: a service can use both drivers, or move from one to the
// other, without its clients reading stale rows.
//
// It is not for applications: they call scopedpgx's or scopedsql's
// WithReadAfter, CommitPosition and ReadYourWrites, which are this
// package's under their own names. It is public only because scopedpgx
// is a module of its own (see package bindings).
package readafter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Position is a point in the primary's write-ahead log (an LSN), such as
// the end of a commit. The zero Position is none.
type Position uint64

// String returns p as PostgreSQL writes an LSN: two hexadecimal numbers
// separated by a slash.
func (p Position) String() string {
	return strings.ToUpper(strconv.FormatUint(uint64(p)>>32, 16) + "/" + strconv.FormatUint(uint64(p)&0xffffffff, 16))
}

// ErrBadPosition is returned by [Parse] for a string that is not an LSN.
var ErrBadPosition = errors.New("scoped: not a WAL position (an LSN such as 16/B374D848)")

// Parse parses an LSN as [Position.String] and PostgreSQL write it.
func Parse(s string) (Position, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("%w: %q", ErrBadPosition, s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: %q", ErrBadPosition, s)
	}
	return Position(h<<32 | l), nil
}

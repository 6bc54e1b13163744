package scoped

import (
	"database/sql"
	"testing"
	"unsafe"
)

// The state a scope and a session carry for their whole life stays small
// (issue 21): what only a creation needs is not kept in every entry.
func TestSizes(t *testing.T) {
	if n := unsafe.Sizeof(Scope{}); n > 96 {
		t.Errorf("Scope is %d bytes, want at most 96", n)
	}
	if n := unsafe.Sizeof(entry[*sql.Tx]{}); n > 128 {
		t.Errorf("entry[*sql.Tx] is %d bytes, want at most 128", n)
	}
	t.Logf("Scope %d B, entry[*sql.Tx] %d B, node %d B", unsafe.Sizeof(Scope{}), unsafe.Sizeof(entry[*sql.Tx]{}), unsafe.Sizeof(node{}))
}

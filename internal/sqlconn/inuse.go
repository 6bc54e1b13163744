package sqlconn

import (
	"database/sql"
	"reflect"
	"sync"
	"unsafe"
)

// database/sql has no way to ask whether a *sql.Conn has something open
// on it. What it has is the lock it holds for reading while a query runs,
// while a *sql.Rows is open and while a *sql.Tx begun on the Conn is not
// ended (Conn.closemu), and that Conn.Close takes for writing, which is why
// Close waits for all of them. Trying that lock is the one exact, race-free
// and non-blocking test there is: a timer around Close would mistake a slow
// scheduler for a leftover and report errors that are not true.
//
// The field has had this name and type since Go 1.9 (when Conn was added)
// through Go 1.26. It is found by reflection once, checked for its type,
// and never written through except by TryLock/Unlock, the mutex's own API.
// If a Go release renames or retypes it, closemuOffset reports !ok and
// the pinned connection falls back to waiting a short grace period (see
// sqlconn.go); TestConnLockIsFound fails on such a release so that the
// fallback is never silently the rule.
var closemuOffset, closemuOK = func() (uintptr, bool) {
	f, ok := reflect.TypeFor[sql.Conn]().FieldByName("closemu")
	if !ok || f.Type != reflect.TypeFor[sync.RWMutex]() {
		return 0, false
	}
	return f.Offset, true
}()

// closeLock returns c's closemu. Only valid when closemuOK.
func closeLock(c *sql.Conn) *sync.RWMutex {
	return (*sync.RWMutex)(unsafe.Add(unsafe.Pointer(c), closemuOffset))
}

// idle reports whether nothing is open on c now: no query running, no
// *sql.Rows and no *sql.Tx holding it. ok is false when the lock could not
// be found and idleness is unknown.
func idle(c *sql.Conn) (idle, ok bool) {
	if !closemuOK {
		return false, false
	}
	mu := closeLock(c)
	if !mu.TryLock() {
		return false, true
	}
	mu.Unlock()
	return true, true
}

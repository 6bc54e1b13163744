package scoped_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
)

// FuzzScopeFuncKey feeds the custom-key path of ScopedSession (WithScopeFunc)
// keys built from arbitrary bytes: scalars, strings, NaNs, pointers,
// channels, and values that cannot be map keys (slices, maps, funcs, and
// structs, arrays and interfaces holding them, including zero-length
// arrays of such structs). Whatever the key, the library must never panic;
// a key that cannot identify a session must make Current, Remove and
// Commit return an error wrapping scoped.ErrInvalidKey that names the
// key's type, and run no factory; a usable key must behave as the
// contract says: one session per key, the same for equal keys and
// different for different ones, shared across scopes, ended exactly once
// by ScopedSession.Remove or Close.
//
// Run it with: go test -run '^$' -fuzz '^FuzzScopeFuncKey$' -fuzztime=10s .
func FuzzScopeFuncKey(f *testing.F) {
	nan := make([]byte, 8)
	binary.LittleEndian.PutUint64(nan, math.Float64bits(math.NaN()))
	for _, seed := range [][]byte{
		{0, fzInt, 7},
		{0, fzString, 3, 'a', 'b', 'c'},
		{1, fzInt, 7}, // ok=false: no scope
		{0, fzNil},
		{0, fzSlice, 2, fzInt, 1, fzInt, 2},
		{0, fzMap, 1},
		{0, fzFunc},
		{0, fzStructPriv, fzSlice, 0},         // struct holding a slice in an interface field
		{0, fzStructPair, fzInt, 1, fzMap, 0}, // struct holding a map in an interface field
		{0, fzArray2, fzString, 0, fzFunc},    // array holding a func in an interface
		{0, fzArray0Any},
		{0, fzArray0Struct},                         // [0]struct{ s []int }: not comparable
		{0, fzStructPair, fzArray0Struct, fzInt, 1}, // ... inside an interface field
		{0, fzFloat, nan[0], nan[1], nan[2], nan[3], nan[4], nan[5], nan[6], nan[7]},
		{0, fzStructPair, fzInt, 3, fzFloat, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, // struct{1.0}
		{0, fzPointer},
		{0, fzChan},
		{0, fzScope},
		{0, fzNamed, 4},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &fzDecoder{b: data}
		ok := d.byte()&1 == 0
		key := d.value(0)
		var key2 any // decoded again: equal unless it holds a pointer, chan or func
		if len(data) > 0 {
			key2 = (&fzDecoder{b: data[1:]}).value(0)
		}
		fzCheckKey(t, key, key2, ok)
	})
}

// Kinds of values the decoder builds, chosen by one byte.
const (
	fzNil byte = iota
	fzInt
	fzString
	fzFloat
	fzBool
	fzComplex
	fzNamed
	fzPointer
	fzChan
	fzScope // the scope of the context: the default behaviour
	fzArray0Any
	fzSlice // from here on: composite, possibly not comparable
	fzMap
	fzFunc
	fzStructPair
	fzStructPriv
	fzArray2
	fzArray0Struct
	fzArray1Struct
	fzArray0Func
	fzStructArray0
	fzPtrToSliceStruct
	fzInterfaceSlice
	fzKinds
)

type (
	fzNamedInt    int
	fzSliceStruct struct{ S []int }
	fzPair        struct{ A, B any }
	fzPriv        struct{ v any }
	fzArray0Field struct{ F [0]fzSliceStruct }
	fzHolder      struct {
		key any
		ok  bool
	}
	fzKeyCtx      struct{}
	fzScopeMarker struct{}
	fzSession     struct {
		id                int
		rollbacks, closes atomic.Int32
		commits           atomic.Int32
	}
)

type fzDecoder struct{ b []byte }

func (d *fzDecoder) byte() byte {
	if len(d.b) == 0 {
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *fzDecoder) uint64() uint64 {
	var buf [8]byte
	for i := range buf {
		buf[i] = d.byte()
	}
	return binary.LittleEndian.Uint64(buf[:])
}

func (d *fzDecoder) value(depth int) any {
	k := d.byte() % fzKinds
	if depth >= 4 && k >= fzSlice {
		k %= fzSlice // keep nesting bounded
	}
	switch k {
	case fzNil:
		return nil
	case fzInt:
		return int(d.byte() % 8) // small, so that keys collide
	case fzString:
		n := int(d.byte() % 8)
		s := make([]byte, 0, n)
		for range n {
			s = append(s, d.byte())
		}
		return string(s)
	case fzFloat:
		return math.Float64frombits(d.uint64())
	case fzBool:
		return d.byte()&1 == 1
	case fzComplex:
		return complex(math.Float64frombits(d.uint64()), math.Float64frombits(d.uint64()))
	case fzNamed:
		return fzNamedInt(d.byte() % 8)
	case fzPointer:
		return new(int)
	case fzChan:
		return make(chan int)
	case fzScope:
		return fzScopeMarker{} // replaced by the scope in the ScopeFunc
	case fzArray0Any:
		return [0]any{}
	case fzSlice:
		n := int(d.byte() % 3)
		s := make([]any, n)
		for i := range s {
			s[i] = d.value(depth + 1)
		}
		return s
	case fzMap:
		return map[string]int{"k": int(d.byte())}
	case fzFunc:
		return func() {}
	case fzStructPair:
		return fzPair{A: d.value(depth + 1), B: d.value(depth + 1)}
	case fzStructPriv:
		return fzPriv{v: d.value(depth + 1)}
	case fzArray2:
		return [2]any{d.value(depth + 1), d.value(depth + 1)}
	case fzArray0Struct:
		return [0]fzSliceStruct{}
	case fzArray1Struct:
		return [1]fzSliceStruct{}
	case fzArray0Func:
		return [0]func(){}
	case fzStructArray0:
		return fzArray0Field{}
	case fzPtrToSliceStruct:
		return &fzSliceStruct{}
	case fzInterfaceSlice:
		var v any = []int{int(d.byte())}
		return fzPair{A: &v, B: v}
	}
	return nil
}

// fzUsable reports, independently of the library, whether key can be a
// map key (hashing it does not panic) and is equal to itself (no NaN):
// only such a key can find its session again.
func fzUsable(key any) (hashable, selfEqual bool) {
	func() {
		defer func() { _ = recover() }()
		m := map[any]int{}
		m[key] = 1
		hashable = true
	}()
	if hashable {
		selfEqual = key == key // false when a NaN is anywhere in the key
	}
	return hashable, selfEqual
}

// fzCall runs f and turns a panic inside the library into a test failure.
func fzCall(t *testing.T, what string, key any, f func()) (panicked bool) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s with the key %#v (%T) panicked inside the library: %v", what, key, key, p)
			panicked = true
		}
	}()
	f()
	return false
}

func fzCheckKey(t *testing.T, key, key2 any, ok bool) {
	var created atomic.Int32
	var sessions []*fzSession
	r := scoped.New(func(context.Context) (*fzSession, error) {
		s := &fzSession{id: int(created.Add(1))}
		sessions = append(sessions, s)
		return s, nil
	},
		scoped.WithName("fz"),
		scoped.WithCommit(func(_ context.Context, s *fzSession) error { s.commits.Add(1); return nil }),
		scoped.WithRollback(func(_ context.Context, s *fzSession) error { s.rollbacks.Add(1); return nil }),
		scoped.WithClose(func(_ context.Context, s *fzSession) error { s.closes.Add(1); return nil }),
		scoped.WithTeardownErrorHook(nil),
		scoped.WithScopeFunc(func(ctx context.Context) (any, bool) {
			h, _ := ctx.Value(fzKeyCtx{}).(*fzHolder)
			if h == nil {
				return nil, false
			}
			if _, isScope := h.key.(fzScopeMarker); isScope {
				s, _ := scoped.FromContext(ctx)
				return s, h.ok
			}
			return h.key, h.ok
		}))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	with := func(ctx context.Context, k any) context.Context {
		return context.WithValue(ctx, fzKeyCtx{}, &fzHolder{key: k, ok: ok})
	}
	kctx := with(ctx, key)
	_, isScope := key.(fzScopeMarker)
	hashable, selfEqual := fzUsable(key)
	if isScope {
		hashable, selfEqual = true, true
	}

	var s1, s2 *fzSession
	var err1, err2 error
	if fzCall(t, "Current", key, func() { s1, err1 = r.Current(kctx) }) {
		return // the store may be left locked: touch r no more
	}
	switch {
	case !ok:
		if !errors.Is(err1, scoped.ErrNoScope) {
			t.Fatalf("Current with ok=false = %v, want ErrNoScope", err1)
		}
	case key == nil:
		// A nil key with ok=true: no scope or an invalid key, never a session.
		if !errors.Is(err1, scoped.ErrInvalidKey) && !errors.Is(err1, scoped.ErrNoScope) {
			t.Fatalf("Current with a nil key = (%v, %v), want ErrInvalidKey or ErrNoScope", s1, err1)
		}
	case !hashable || !selfEqual:
		why := "cannot be a map key"
		if hashable {
			why = "is not equal to itself (NaN): no later call can find its session"
		}
		if !errors.Is(err1, scoped.ErrInvalidKey) {
			t.Fatalf("Current with the key %#v (%T), which %s, = (%v, %v), want an error wrapping ErrInvalidKey", key, key, why, s1, err1)
		}
		if typ := fmt.Sprintf("%T", key); !strings.Contains(err1.Error(), typ) {
			t.Errorf("the error %q does not name the key's type %s", err1, typ)
		}
	default:
		if err1 != nil || s1 == nil {
			t.Fatalf("Current with the key %#v (%T) = (%v, %v), want a session", key, key, s1, err1)
		}
	}
	if err1 != nil {
		// Nothing may have been created or registered, and the other
		// entry points must agree.
		var has bool
		var rerr, cerr error
		if fzCall(t, "Has", key, func() { has = r.Has(kctx) }) ||
			fzCall(t, "Remove", key, func() { rerr = r.Remove(kctx) }) ||
			fzCall(t, "Commit", key, func() { cerr = r.Commit(kctx) }) {
			return
		}
		if has {
			t.Error("Has = true after Current failed")
		}
		want := scoped.ErrInvalidKey
		if !ok || errors.Is(err1, scoped.ErrNoScope) {
			want = scoped.ErrNoScope
		}
		if !errors.Is(rerr, want) || !errors.Is(cerr, want) {
			t.Errorf("Remove = %v, Commit = %v; want both to wrap %v", rerr, cerr, want)
		}
		if n := created.Load(); n != 0 {
			t.Errorf("the factory ran %d times for a key that has no session", n)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
		return
	}

	// A usable key: the same session again, and Has sees it.
	if fzCall(t, "Current", key, func() { s2, err2 = r.Current(kctx) }) {
		return
	}
	if err2 != nil || s2 != s1 {
		t.Fatalf("second Current with the key %#v (%T) = (%v, %v), want the first session %v", key, key, s2, err2, s1)
	}
	if !r.Has(kctx) {
		t.Fatal("Has = false with a session")
	}

	// The key decoded a second time: the same session exactly when the
	// keys are equal (pointers, chans and funcs are fresh each time).
	if !isScope {
		if h2, eq2 := fzUsable(key2); h2 && eq2 {
			var s3 *fzSession
			var err3 error
			if fzCall(t, "Current", key2, func() { s3, err3 = r.Current(with(ctx, key2)) }) {
				return
			}
			if err3 != nil {
				t.Fatalf("Current with the key %#v = %v", key2, err3)
			}
			if same := key == key2; same != (s3 == s1) {
				t.Fatalf("keys %#v and %#v: equal=%v but same session=%v", key, key2, same, s3 == s1)
			}
			if s3 != s1 {
				if err := r.Remove(with(ctx, key2)); err != nil {
					t.Fatalf("Remove of the second key's session = %v", err)
				}
			}
		}
	}

	if isScope {
		// Keyed on the scope itself: the default behaviour, ended with it.
		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}
		if s1.rollbacks.Load() != 1 || s1.closes.Load() != 1 {
			t.Fatalf("scope-keyed session after Remove: %d rollbacks, %d closes; want 1, 1", s1.rollbacks.Load(), s1.closes.Load())
		}
		if _, err := r.Current(kctx); !errors.Is(err, scoped.ErrScopeClosed) {
			t.Fatalf("Current after the scope ended = %v, want ErrScopeClosed", err)
		}
	} else {
		// Shared across scopes, and not ended by the scope that created it.
		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}
		if s1.rollbacks.Load() != 0 || s1.closes.Load() != 0 {
			t.Fatal("a keyed session was ended by the scope that created it")
		}
		ctx2, scope2 := scoped.Begin(context.Background())
		defer scope2.Remove()
		k2ctx := with(ctx2, key)
		if s, err := r.Current(k2ctx); err != nil || s != s1 {
			t.Fatalf("Current from another scope with the same key = (%v, %v), want the shared session", s, err)
		}
		if err := r.Remove(k2ctx); err != nil {
			t.Fatalf("Remove = %v", err)
		}
		if s1.rollbacks.Load() != 1 || s1.closes.Load() != 1 || s1.commits.Load() != 0 {
			t.Fatalf("after Remove: %d commits, %d rollbacks, %d closes; want 0, 1, 1", s1.commits.Load(), s1.rollbacks.Load(), s1.closes.Load())
		}
		if r.Has(k2ctx) {
			t.Fatal("Has = true after Remove")
		}
		if err := r.Remove(k2ctx); err != nil {
			t.Fatalf("second Remove = %v, want nil (nothing left)", err)
		}
		// A new session for the key, committed by Commit, then one more
		// that only Close ends.
		s4, err := r.Current(k2ctx)
		if err != nil || s4 == s1 {
			t.Fatalf("Current after Remove = (%v, %v), want a new session", s4, err)
		}
		if err := r.Commit(k2ctx); err != nil {
			t.Fatalf("Commit = %v", err)
		}
		if s4.commits.Load() != 1 || s4.closes.Load() != 1 || s4.rollbacks.Load() != 0 {
			t.Fatalf("after Commit: %d commits, %d rollbacks, %d closes; want 1, 0, 1", s4.commits.Load(), s4.rollbacks.Load(), s4.closes.Load())
		}
		if _, err := r.Current(k2ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	for _, s := range sessions {
		if n := s.commits.Load() + s.rollbacks.Load(); n != 1 || s.closes.Load() != 1 {
			t.Fatalf("session %d ended with %d commits, %d rollbacks, %d closes; want exactly one commit or rollback and one close",
				s.id, s.commits.Load(), s.rollbacks.Load(), s.closes.Load())
		}
	}
	if st := r.Stats(); st.Live != 0 || st.Created != int64(len(sessions)) {
		t.Fatalf("Stats = %+v after Close, want Live 0 and Created %d", st, len(sessions))
	}
}

package scopedsql

import (
	"context"
	"testing"
	"time"
)

type ctxKey struct{}

// beginCtx, as database/sql uses it: WithCancel of it registers through
// AfterFunc; a fire during the begin cancels that child, and a context
// that never fired is never done.
func TestBeginCtxPropagatesOnlyAFireDuringTheBegin(t *testing.T) {
	t.Parallel()
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	b := &beginCtx{parent: parent}
	stop := context.AfterFunc(parent, b.fire)
	child, cancelChild := context.WithCancel(b) // what database/sql's beginDC does
	defer cancelChild()
	if b.Value(ctxKey{}) != "v" || child.Value(ctxKey{}) != "v" {
		t.Error("the scope's values are lost")
	}
	if _, ok := b.Deadline(); ok {
		t.Error("beginCtx has a deadline")
	}
	cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a cancellation during the begin did not reach database/sql's context")
	}
	if stop() {
		t.Error("stop reports the fire did not happen")
	}
	if b.Err() != context.Canceled {
		t.Errorf("Err = %v, want context.Canceled", b.Err())
	}
	late := make(chan struct{})
	b.AfterFunc(func() { close(late) }) // registered after the fire: runs at once
	<-late

	// Settled without a fire: never done, even when the parent ends later.
	parent2, cancel2 := context.WithCancel(context.Background())
	b2 := &beginCtx{parent: parent2}
	stop2 := context.AfterFunc(parent2, b2.fire)
	child2, cancelChild2 := context.WithCancel(b2)
	if !stop2() {
		t.Fatal("stop of an unfired begin reports a fire")
	}
	b2.settle()
	cancel2()
	select {
	case <-child2.Done():
		t.Fatal("the transaction's context ended with the scope's context after the begin")
	case <-b2.Done():
		t.Fatal("beginCtx is done after the begin")
	case <-time.After(20 * time.Millisecond):
	}
	cancelChild2() // the transaction ends: its stop is harmless
	if b2.Err() != nil {
		t.Errorf("Err = %v after the begin", b2.Err())
	}
}

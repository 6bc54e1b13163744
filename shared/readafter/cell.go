package readafter

import (
	"context"
	"sync/atomic"
)

// A Cell is the position a context carries ([With]): what the reads of
// the units begun under it must see, raised by their commits. Units of
// one request may commit concurrently, so it only moves forward.
type Cell struct{ p atomic.Uint64 }

// Raise moves c to p if p is after it.
func (c *Cell) Raise(p Position) {
	for {
		old := c.p.Load()
		if uint64(p) <= old || c.p.CompareAndSwap(old, uint64(p)) {
			return
		}
	}
}

// Load returns c's position.
func (c *Cell) Load() Position { return Position(c.p.Load()) }

type key struct{}

// With returns ctx carrying a new [Cell] at pos.
func With(ctx context.Context, pos Position) context.Context {
	c := &Cell{}
	c.p.Store(uint64(pos))
	return context.WithValue(ctx, key{}, c)
}

// CellOf returns the Cell ctx carries, or nil.
func CellOf(ctx context.Context) *Cell {
	c, _ := ctx.Value(key{}).(*Cell)
	return c
}

// Of returns the position of the Cell ctx carries, or zero if it carries
// none.
func Of(ctx context.Context) Position {
	if c := CellOf(ctx); c != nil {
		return c.Load()
	}
	return 0
}

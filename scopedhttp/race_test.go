//go:build race

package scopedhttp_test

// raceEnabled: the race detector is on. sync.Pool then drops items at
// random, so allocation counts say nothing about pooling.
const raceEnabled = true

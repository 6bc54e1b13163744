//go:build !race

package scopedhttp_test

const raceEnabled = false

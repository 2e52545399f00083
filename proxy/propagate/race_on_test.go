//go:build race

package propagate_test

const raceEnabled = true

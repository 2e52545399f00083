//go:build race

package trace

// raceOn is raceEnabled for the package's internal tests.
const raceOn = true

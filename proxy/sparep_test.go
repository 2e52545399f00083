package proxy

import (
	"runtime"
	"testing"
)

// SpareP only says what GOMAXPROCS should be: the program that owns the
// process sets it.
func TestSparePChangesNothing(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	before := runtime.GOMAXPROCS(0)
	if got := SpareP(); got != before+1 && runtime.GOOS == "linux" {
		t.Errorf("SpareP() = %d with GOMAXPROCS %d; want one more", got, before)
	}
	if now := runtime.GOMAXPROCS(0); now != before {
		t.Errorf("SpareP changed GOMAXPROCS from %d to %d", before, now)
	}
	t.Setenv("GOMAXPROCS", "1")
	if got := SpareP(); got != before {
		t.Errorf("SpareP() = %d with GOMAXPROCS set in the environment; want it left at %d", got, before)
	}
}

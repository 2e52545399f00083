//go:build !linux

package proxy

// loops is Linux's event loop (loop_linux.go); elsewhere every connection
// stays on the goroutine path.
type loops struct{}

func newLoops(*Server, int) *loops { return nil }
func (*loops) adopt(*h1conn) bool  { return false }
func (*loops) closeRoute(*route)   {}
func (*loops) stop()               {}
func (*loops) served() uint64      { return 0 }

// SpareP does nothing where there is no event loop.
func SpareP() {}

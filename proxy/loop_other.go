//go:build !linux

package proxy

import "runtime"

// loops is Linux's event loop (loop_linux.go); elsewhere every connection
// stays on the goroutine path.
type loops struct{}

func newLoops(*Server, int) *loops { return nil }
func (*loops) adopt(*h1conn) bool  { return false }
func (*loops) closeRoute(*route)   {}
func (*loops) stop()               {}
func (*loops) served() uint64      { return 0 }

// SpareP returns the current GOMAXPROCS: without event loops no P needs
// sparing.
func SpareP() int { return runtime.GOMAXPROCS(0) }

// defaultHoldWaitMs: there is no loop to hold a P.
const defaultHoldWaitMs = 0

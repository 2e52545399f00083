//go:build !linux

package proxy

import "sync/atomic"

// loops is Linux's event loop (loop_linux.go); elsewhere every connection
// stays on the goroutine path.
type loops struct{ served atomic.Uint64 }

func newLoops(*Server, int) *loops { return nil }
func (*loops) adopt(*h1conn) bool  { return false }
func (*loops) closeRoute(*route)   {}
func (*loops) stop()               {}

// SpareP does nothing where there is no event loop.
func SpareP() {}

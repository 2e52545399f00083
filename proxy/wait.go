package proxy

import (
	"context"
	"time"
)

// spinTail is how much of an injected delay ends in a busy loop instead
// of on a timer. After 100 ms of idling, a wakeup from the kernel costs
// a few hundred microseconds more than the timer's own error on a
// virtual machine (measured with bench/fault.sh, one connection: the
// delay's p50 overshoot 0.96 ms on the timer alone, 0.67 ms with the
// last 400 µs spun). Only one wait spins at a time (Server.spin), so the
// cost is bounded at a fraction of one core whatever the load.
const spinTail = 400 * time.Microsecond

// waitTimer holds for d on a runtime timer, or until ctx (which may be
// nil) ends; false when ctx ended first. It is waitFor's fallback, and
// waitFor itself where there is no timerfd.
func waitTimer(ctx context.Context, d time.Duration) bool {
	if ctx == nil {
		time.Sleep(d)
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

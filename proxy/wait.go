package proxy

import (
	"context"
	"time"
)

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

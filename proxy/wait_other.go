//go:build !linux

package proxy

import (
	"context"
	"sync/atomic"
	"time"
)

// waitFor holds for d, or until ctx (which may be nil) ends.
func waitFor(ctx context.Context, d time.Duration, _ *atomic.Bool) bool {
	if d <= 0 {
		return ctx == nil || ctx.Err() == nil
	}
	return waitTimer(ctx, d)
}

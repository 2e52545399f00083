// Package health runs Compose healthchecks for backends whose engine does not
// (native processes): the probe schedule, the start period with its faster
// start_interval, and the retries that turn failures into "unhealthy".
package health

import (
	"context"
	"time"

	"github.com/devstack/devstack/runner/project"
)

// Probe runs the healthcheck test once. A nil error means healthy. It must
// honour ctx, which carries the healthcheck timeout.
type Probe func(ctx context.Context) error

// Result is one verdict change or probe outcome.
type Result struct {
	Healthy bool
	// Unhealthy is set once retries consecutive failures happened after the
	// start period.
	Unhealthy bool
	// Err is the last probe's error, nil on success.
	Err error
}

// Run probes until ctx ends, reporting each probe's outcome to report.
//
// Schedule, as Docker implements Compose healthchecks: during start_period
// the probe runs every start_interval and failures do not count; the first
// success ends the start period. After it, the probe runs every interval and
// retries consecutive failures make the service unhealthy; one success makes
// it healthy again.
func Run(ctx context.Context, hc *project.Healthcheck, probe Probe, report func(Result)) {
	started := time.Now()
	inStart := hc.StartPeriod > 0
	failures := 0
	next := hc.Interval
	if inStart {
		next = hc.StartInterval
	}
	for {
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, hc.Timeout)
		err := probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if inStart && (err == nil || time.Now().Sub(started) >= hc.StartPeriod) {
			inStart = false
		}
		var res Result
		switch {
		case err == nil:
			failures = 0
			res = Result{Healthy: true}
		case inStart:
			// Failures in the start period don't count towards retries.
			res = Result{Err: err}
		default:
			failures++
			res = Result{Err: err, Unhealthy: failures >= max(hc.Retries, 1)}
		}
		report(res)
		next = hc.Interval
		if inStart {
			next = hc.StartInterval
		}
	}
}

package docker

import (
	"context"
	"io"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client/pkg/versions"

	"github.com/devstack/devstack/runner/project"
)

// Health pacing: engines before API 1.44 ignore a healthcheck's
// start_interval and probe a starting container at its interval only, so
// a file written for a newer engine (interval: 30s, start_interval: 1s)
// would keep every service_healthy dependent waiting a whole interval.
// On such an engine the instance runs the healthcheck itself, through
// exec, at the start_interval pace during start_period, until its first
// success, as a newer engine would; from then on the engine's own checks
// (its events) decide, as they do after the start period.
//
//	start ──exec probe every start_interval──▶ first success: healthy
//	  └──────── engine probe every interval ──▶ health_status events (take over)

// verdict is one replica's health as a pacing probe saw it.
type verdict struct {
	id     string
	status container.HealthStatus
}

// pacesHealth reports whether the instance runs hc's probes itself
// during the start period: the engine ignores start_interval, and it is
// shorter than the interval the engine probes at.
func (b *Backend) pacesHealth(hc *project.Healthcheck) bool {
	return hc != nil && versions.LessThan(b.cli.ClientVersion(), "1.44") &&
		hc.StartPeriod > 0 && hc.StartInterval > 0 && hc.StartInterval < hc.Interval
}

// paceHealth probes r every hc.StartInterval (the first one after it, as
// the engine would) until a probe succeeds, which it sends to out, or the
// start period is over, or the instance ends. A failure is not sent: in
// the start period it does not count, and after it the engine decides.
func (i *Instance) paceHealth(r *replica, hc *project.Healthcheck, out chan<- verdict) {
	end := time.Now().Add(hc.StartPeriod)
	t := time.NewTimer(hc.StartInterval)
	defer t.Stop()
	for {
		select {
		case <-i.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(i.ctx, hc.Timeout)
		code, err := i.b.Exec(ctx, r.id, ExecOptions{Cmd: hc.Test.Argv(), Stdout: io.Discard, Stderr: io.Discard})
		cancel()
		if err == nil && code == 0 {
			select {
			case out <- verdict{id: r.id, status: container.Healthy}:
			case <-i.ctx.Done():
			}
			return
		}
		if !time.Now().Before(end) {
			return
		}
		t.Reset(hc.StartInterval)
	}
}

package health

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devstack/devstack/runner/project"
)

// collect runs the checker until stop says enough, returning the results.
func collect(t *testing.T, hc *project.Healthcheck, probe Probe, stop func([]Result) bool) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ch := make(chan Result, 100)
	go Run(ctx, hc, probe, func(r Result) { ch <- r })
	var got []Result
	for {
		select {
		case r := <-ch:
			got = append(got, r)
			if stop(got) {
				return got
			}
		case <-ctx.Done():
			t.Fatalf("no verdict before deadline; results so far: %+v", got)
		}
	}
}

func TestStartIntervalIsUsedDuringStartPeriod(t *testing.T) {
	// With a one-hour interval, only start_interval can produce a verdict
	// within the test deadline.
	hc := &project.Healthcheck{Interval: time.Hour, Timeout: time.Second, Retries: 3,
		StartPeriod: time.Minute, StartInterval: 10 * time.Millisecond}
	var n atomic.Int32
	probe := func(context.Context) error {
		if n.Add(1) < 4 {
			return errors.New("not yet")
		}
		return nil
	}
	got := collect(t, hc, probe, func(rs []Result) bool { return rs[len(rs)-1].Healthy })
	if len(got) != 4 {
		t.Fatalf("got %d results, want 4 (3 failures then healthy): %+v", len(got), got)
	}
	for _, r := range got[:3] {
		if r.Unhealthy {
			t.Fatalf("failure during start period counted as unhealthy: %+v", got)
		}
	}
}

func TestRetriesMakeUnhealthyAfterStartPeriod(t *testing.T) {
	hc := &project.Healthcheck{Interval: 5 * time.Millisecond, Timeout: time.Second, Retries: 3}
	probe := func(context.Context) error { return errors.New("down") }
	got := collect(t, hc, probe, func(rs []Result) bool { return rs[len(rs)-1].Unhealthy })
	if len(got) != 3 {
		t.Fatalf("unhealthy after %d failures, want 3", len(got))
	}
}

func TestSuccessResetsFailures(t *testing.T) {
	hc := &project.Healthcheck{Interval: 5 * time.Millisecond, Timeout: time.Second, Retries: 2}
	var n atomic.Int32
	// fail, ok, fail, ok, fail, fail → unhealthy only at the 6th probe.
	pattern := []bool{false, true, false, true, false, false}
	probe := func(context.Context) error {
		i := int(n.Add(1)) - 1
		if i < len(pattern) && pattern[i] {
			return nil
		}
		return errors.New("down")
	}
	got := collect(t, hc, probe, func(rs []Result) bool { return rs[len(rs)-1].Unhealthy })
	if len(got) != 6 {
		t.Fatalf("unhealthy after %d probes, want 6: %+v", len(got), got)
	}
}

func TestTimeoutFailsProbe(t *testing.T) {
	hc := &project.Healthcheck{Interval: 5 * time.Millisecond, Timeout: 20 * time.Millisecond, Retries: 1}
	probe := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	got := collect(t, hc, probe, func(rs []Result) bool { return len(rs) == 1 })
	if !got[0].Unhealthy || !errors.Is(got[0].Err, context.DeadlineExceeded) {
		t.Fatalf("want unhealthy on timeout, got %+v", got[0])
	}
}

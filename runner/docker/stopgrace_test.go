package docker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
)

// A stop's grace (docker compose's stop -t, down -t) must reach the
// engine's stop of the container, in place of stop_grace_period: the
// test service ignores SIGUSR1 (Go ignores signals it was not asked to
// catch), so only the SIGKILL after the grace ends it.
func TestRunnerStopGraceReachesTheEngine(t *testing.T) {
	s := newStack(t, `
services:
  stubborn:
    image: {{IMAGE}}
    stop_signal: SIGUSR1
    stop_grace_period: 30s
    environment:
      NAME: stubborn`+healthy+`
  other:
    image: {{IMAGE}}
    stop_signal: SIGUSR1
    stop_grace_period: 30s
    environment:
      NAME: other`+healthy+`
`)
	r, l, events := runStack(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatalf("up: %v\n%s", err, l)
	}
	zero := time.Duration(0)
	const quickly = 15 * time.Second // well under the 30s grace
	start := time.Now()
	if err := r.Stop(ctx, []string{"stubborn"}, runner.StopOptions{Grace: &zero}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > quickly {
		t.Errorf("stop with a grace of 0 took %s; its stop_grace_period is 30s", el)
	}
	if st := status(r, "stubborn"); st.State != runner.StateStopped {
		t.Errorf("stubborn after the stop: %s, want stopped", st.State)
	}
	start = time.Now()
	if err := r.Down(ctx, runner.StopOptions{Grace: &zero}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > quickly {
		t.Errorf("down with a grace of 0 took %s; other's stop_grace_period is 30s", el)
	}
	want := "other: stopping: sent SIGUSR1, SIGKILL after 0s (this stop's timeout; its stop_grace_period is 30s)"
	if ev := events(); !strings.Contains(strings.Join(ev, "\n"), want) {
		t.Errorf("down does not say its grace; want %q in:\n%s", want, strings.Join(ev, "\n"))
	}
}

package runner_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/process"
)

// quickly bounds a stop whose grace was cut to a second or less, for
// services whose stop_grace_period is 30s: well under the grace, with
// room for a loaded machine.
const quickly = 10 * time.Second

// A stop's Grace (docker compose's -t) must replace stop_grace_period for
// that stop only, in Stop, Restart and Down, and the stop must say so; a
// stop without one keeps the file's grace, and says it as before.
func TestStopGraceReplacesStopGracePeriod(t *testing.T) {
	const stubborn = "      IGNORE_TERM: \"1\"\n    stop_grace_period: 30s\n" + readyHC
	s := newStack(t, "services:"+svc("stubborn", "block", stubborn)+svc("other", "block", stubborn)+
		svc("polite", "block", "    stop_grace_period: 7s\n"+readyHC))
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	grace := func(d time.Duration) runner.StopOptions { return runner.StopOptions{Grace: &d} }

	start := time.Now()
	if err := s.r.Stop(t.Context(), []string{"stubborn"}, grace(0)); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > quickly {
		t.Fatalf("stop with a grace of 0 took %s; its stop_grace_period is 30s", el)
	}
	if st := s.status("stubborn"); st.State != runner.StateStopped || st.LastExit == nil || st.LastExit.Signal != "killed" {
		t.Fatalf("stubborn after the stop: %s, last exit %+v; want stopped, killed", st.State, st.LastExit)
	}
	if want := "stubborn sys stopping: sent SIGTERM, SIGKILL after 0s (this stop's timeout; its stop_grace_period is 30s)\n"; !strings.Contains(s.sink.String(), want) {
		t.Errorf("the stop does not say its grace; want %q in:\n%s", want, s.sink)
	}
	if err := s.up("stubborn"); err != nil {
		t.Fatal(err)
	}

	// Restart: the grace is the whole wait, then the service runs again.
	before := s.status("other").ID
	start = time.Now()
	if err := s.r.Restart(t.Context(), []string{"other"}, grace(time.Second)); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second || el > quickly {
		t.Errorf("restart with a grace of 1s took %s; want 1s and a little (its stop_grace_period is 30s)", el)
	}
	if st := s.status("other"); st.State != runner.StateRunning || st.ID == before {
		t.Errorf("other after the restart: %s, id %s (was %s); want running again, a new instance", st.State, st.ID, before)
	}

	// Without a grace: the file's, said as it always was.
	if err := s.r.Stop(t.Context(), []string{"polite"}, runner.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if want := "polite sys stopping: sent SIGTERM, SIGKILL after 7s\n"; !strings.Contains(s.sink.String(), want) {
		t.Errorf("a stop without a grace does not say the file's; want %q in:\n%s", want, s.sink)
	}

	start = time.Now()
	if err := s.r.Down(t.Context(), grace(0)); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > quickly {
		t.Fatalf("down with a grace of 0 took %s; stubborn and other's stop_grace_period is 30s", el)
	}
	for _, name := range []string{"stubborn", "other"} {
		if st := s.status(name); st.LastExit == nil || st.LastExit.Signal != "killed" {
			t.Errorf("%s after down: last exit %+v; want killed", name, st.LastExit)
		}
	}
}

// startsLate is a backend whose Start returns only once its ctx ends, as
// a stop ends it, and then starts the instance all the same, returning
// once the test service has set up its signals ($READY): the stop found
// no instance to signal, and the supervise loop must stop the one it
// gets.
type startsLate struct{ runner.Backend }

func (b startsLate) Start(ctx context.Context, spec runner.Spec) (runner.Instance, error) {
	<-ctx.Done()
	inst, err := b.Backend.Start(context.WithoutCancel(ctx), spec)
	if err != nil {
		return nil, err
	}
	var ready string
	for _, kv := range spec.Env {
		if v, ok := strings.CutPrefix(kv, "READY="); ok {
			ready = v
		}
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.After(10 * time.Second); ; {
		if _, err := os.Stat(ready); err == nil {
			return inst, nil
		}
		select {
		case <-deadline:
			return inst, nil // the test then fails on the service's exit
		case <-tick.C:
		}
	}
}

// A stop that arrives while the service is still starting must give the
// instance that start makes the stop's grace, not stop_grace_period.
func TestStopGraceReachesAServiceStillStarting(t *testing.T) {
	s := newStackWith(t, "services:"+svc("slow", "block", "      IGNORE_TERM: \"1\"\n    stop_grace_period: 30s\n"), startsLate{&process.Backend{}})
	go s.up() // fails once slow is stopped
	s.waitFor("slow", "launched", func(st runner.ServiceStatus) bool { return st.State == runner.StateWaiting })
	zero := time.Duration(0)
	start := time.Now()
	if err := s.r.Stop(t.Context(), []string{"slow"}, runner.StopOptions{Grace: &zero}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > quickly {
		t.Fatalf("stop with a grace of 0 of a starting service took %s; its stop_grace_period is 30s", el)
	}
	if st := s.status("slow"); st.LastExit == nil || st.LastExit.Signal != "killed" {
		t.Errorf("slow after the stop: %s, last exit %+v; want killed (it ignores SIGTERM)", st.State, st.LastExit)
	}
}

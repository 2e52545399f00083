package docker

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// runStack drives s through runner.Runner with this backend, as `up` does.
func runStack(t *testing.T, s *stack) (*runner.Runner, *logs, func() []string) {
	t.Helper()
	l := &logs{}
	var (
		mu     sync.Mutex
		events []string
	)
	r, err := runner.New(s.p, runner.Options{
		BackendFor: func(*project.Service) (runner.Backend, error) { return s.b, nil },
		Logs:       sink{l},
		Events: func(e runner.Event) {
			mu.Lock()
			events = append(events, e.Service+": "+e.Msg)
			mu.Unlock()
		},
		RunID: randHex(3),
	})
	if err != nil {
		t.Fatalf("runner.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.Down(ctx, runner.StopOptions{}); err != nil {
			t.Errorf("runner down: %v", err)
		}
	})
	return r, l, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), events...)
	}
}

func status(r *runner.Runner, name string) runner.ServiceStatus {
	for _, st := range r.Status() {
		if st.Name == name {
			return st
		}
	}
	return runner.ServiceStatus{}
}

// depends_on service_healthy must wait for the engine's healthcheck,
// followed through events, before the dependent starts.
func TestRunnerWaitsForEngineHealth(t *testing.T) {
	s := newStack(t, `
services:
  db:
    image: {{IMAGE}}
    environment:
      NAME: db`+healthy+`
  app:
    image: {{IMAGE}}
    command: ["fetch", "http://db:8080/"]
    depends_on:
      db:
        condition: service_healthy
`)
	r, l, events := runStack(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatalf("up: %v\n%s", err, l)
	}
	if st := status(r, "db"); st.State != runner.StateRunning || st.Health != runner.HealthHealthy {
		t.Errorf("db = %s/%s, want running/healthy", st.State, st.Health)
	}
	// app fetched db once and completed: it ran only after db was healthy.
	if err := l.waitFor(ctx, "app: hello from db"); err != nil {
		t.Error(err)
	}
	if err := l.waitFor(ctx, "app: exited (exit code 0)"); err != nil {
		t.Fatal(err)
	}
	if st := status(r, "app"); st.State != runner.StateCompleted {
		t.Errorf("app = %s (%v), want completed\n%s", st.State, st.LastExit, l)
	}
	ev := events()
	healthyAt, startedAt := -1, -1
	for i, e := range ev {
		switch {
		case e == "db: healthy" && healthyAt < 0:
			healthyAt = i
		case strings.HasPrefix(e, "app: started") && startedAt < 0:
			startedAt = i
		}
	}
	if healthyAt < 0 || startedAt < healthyAt {
		t.Errorf("app must start after db is healthy; events:\n%s", strings.Join(ev, "\n"))
	}
}

// The runner, not the engine, must restart a container that exits
// non-zero (restart: on-failure), and the named volume must survive the
// new container.
func TestRunnerRestartsContainer(t *testing.T) {
	s := newStack(t, `
services:
  flaky:
    image: {{IMAGE}}
    restart: on-failure
    environment:
      NAME: flaky
      CRASH_ONCE: /state/crashed
    volumes:
      - state:/state`+healthy+`
volumes:
  state: {}
`)
	r, l, events := runStack(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatalf("up: %v\n%s\n%s", err, l, strings.Join(events(), "\n"))
	}
	st := status(r, "flaky")
	if st.Restarts != 1 || st.LastExit == nil || st.LastExit.Code != 3 {
		t.Errorf("flaky: restarts %d, last exit %+v; want 1 restart after exit code 3\n%s", st.Restarts, st.LastExit, l)
	}
	if st.State != runner.StateRunning || st.Health != runner.HealthHealthy {
		t.Errorf("flaky = %s/%s after the restart, want running/healthy", st.State, st.Health)
	}
	if !strings.Contains(l.String(), "flaky: crashing once") {
		t.Errorf("first run's output missing:\n%s", l)
	}
	// One container, the new one: the crashed one was replaced.
	cs, err := s.b.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelProject+"="+s.p.Name)})
	if err != nil || len(cs.Items) != 1 || cs.Items[0].State != "running" {
		t.Errorf("containers after restart = %+v (%v); want one running", cs.Items, err)
	}
}

// A healthcheck with a long interval and a short start_interval must make
// its service healthy at the start_interval pace, on any engine: one
// before API 1.44 ignores start_interval and would probe only after the
// hour, so devstack probes itself (through exec) during start_period.
func TestStartIntervalPacesHealth(t *testing.T) {
	s := newStack(t, `
services:
  db:
    image: {{IMAGE}}
    healthcheck:
      test: ["CMD", "/testsvc", "check", "http://localhost:8080/healthz"]
      interval: 1h
      timeout: 5s
      start_period: 10m
      start_interval: 200ms
`)
	r, l, _ := runStack(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatalf("up: %v (the engine probes only hourly: the start_interval pace must make it healthy)\n%s", err, l)
	}
	if st := status(r, "db"); st.State != runner.StateRunning || st.Health != runner.HealthHealthy {
		t.Errorf("db = %s/%s, want running/healthy", st.State, st.Health)
	}
}

package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/process"
	"github.com/devstack/devstack/runner/project"
)

// memSink collects every service's output in memory.
type memSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (m *memSink) Writer(service, stream string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, line := range strings.SplitAfter(string(p), "\n") {
			if line != "" {
				fmt.Fprintf(&m.buf, "%s %s %s", service, stream, line)
			}
		}
		return len(p), nil
	})
}

func (m *memSink) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.buf.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// stack is a project under test, made of test-binary services.
type stack struct {
	t    *testing.T
	dir  string
	log  string // the file services record start/stop in
	sink *memSink
	r    *runner.Runner
}

// newStack writes yaml (with {{BIN}}, {{DIR}} replaced) to a temp dir,
// loads it and builds a Runner with the process backend.
func newStack(t *testing.T, yaml string) *stack {
	t.Helper()
	return newStackWith(t, yaml, &process.Backend{})
}

// newStackWith is newStack with backend be for every service.
func newStackWith(t *testing.T, yaml string, be runner.Backend) *stack {
	t.Helper()
	dir := t.TempDir()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	yaml = strings.NewReplacer("{{BIN}}", bin, "{{DIR}}", dir).Replace(yaml)
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "rt"})
	if err != nil {
		t.Fatalf("loading test stack: %v", err)
	}
	s := &stack{t: t, dir: dir, log: filepath.Join(dir, "events.log"), sink: &memSink{}}
	s.r, err = runner.New(p, runner.Options{
		BackendFor: func(*project.Service) (runner.Backend, error) { return be, nil },
		Logs:       s.sink,
		RunID:      testRunID(),
	})
	if err != nil {
		t.Fatalf("runner.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.r.Down(ctx, runner.StopOptions{}); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	return s
}

// events returns the lines services recorded ("start a", "stop a").
func (s *stack) events() []string {
	b, _ := os.ReadFile(s.log)
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
}

func (s *stack) up(names ...string) error {
	ctx, cancel := context.WithTimeout(s.t.Context(), 30*time.Second)
	defer cancel()
	return s.r.Up(ctx, names)
}

func (s *stack) status(name string) runner.ServiceStatus {
	for _, st := range s.r.Status() {
		if st.Name == name {
			return st
		}
	}
	s.t.Fatalf("no service %q", name)
	return runner.ServiceStatus{}
}

// waitFor waits until cond holds for the named service's status.
func (s *stack) waitFor(name string, what string, cond func(runner.ServiceStatus) bool) runner.ServiceStatus {
	s.t.Helper()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st := s.status(name)
		if cond(st) {
			return st
		}
		select {
		case <-deadline:
			s.t.Fatalf("service %s never became %s; last status %+v\nlogs:\n%s", name, what, st, s.sink)
		case <-tick.C:
		}
	}
}

func indexOf(list []string, v string) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return -1
}

func svc(name, mode string, extra string) string {
	return fmt.Sprintf(`
  %s:
    x-devstack:
      run: ["{{BIN}}"]
      port_env: PORT
    environment:
      RUNNERTEST_MODE: %s
      LOG: "{{DIR}}/events.log"
      READY: "{{DIR}}/%s.ready"
%s`, name, mode, name, extra)
}

// readyHC is a healthcheck that passes once the test service has set up
// its signal handling (it then creates $READY).
const readyHC = `    healthcheck:
      test: ["CMD-SHELL", "test -f \"$$READY\""]
      interval: 1h
      start_period: 1m
      start_interval: 20ms
`

// neverHC never passes and, within its start period, never fails for good.
const neverHC = `    healthcheck:
      test: ["CMD", "false"]
      interval: 1h
      start_period: 1m
      start_interval: 20ms
`

// startedBefore asserts a's instance started before b's.
func (s *stack) startedBefore(a, b string) {
	s.t.Helper()
	sa, sb := s.status(a), s.status(b)
	if sa.StartedAt == nil || sb.StartedAt == nil || !sa.StartedAt.Before(*sb.StartedAt) {
		s.t.Fatalf("%s must start before %s: %v vs %v", a, b, sa.StartedAt, sb.StartedAt)
	}
}

func TestStartsInDependencyOrderAndStopsInReverse(t *testing.T) {
	// Healthchecks make sure each has set up its SIGTERM handler, so the
	// stop records are written.
	s := newStack(t, "services:"+
		svc("db", "block", readyHC)+
		svc("api", "block", readyHC+"    depends_on: [db]\n")+
		svc("worker", "block", readyHC+"    depends_on: [db]\n")+
		svc("web", "block", readyHC+"    depends_on: [api, worker]\n"))
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{"db", "api"}, {"db", "worker"}, {"api", "web"}, {"worker", "web"}} {
		s.startedBefore(pair[0], pair[1])
	}
	if err := s.r.Down(t.Context(), runner.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := s.events()
	for _, pair := range [][2]string{{"web", "api"}, {"web", "worker"}, {"api", "db"}, {"worker", "db"}} {
		if i, j := indexOf(ev, "stop_"+pair[0]), indexOf(ev, "stop_"+pair[1]); i < 0 || j < 0 || i > j {
			t.Fatalf("%s must stop before %s; events %v", pair[0], pair[1], ev)
		}
	}
	for _, st := range s.r.Status() {
		if st.State != runner.StateStopped {
			t.Errorf("%s: state %s after down, want stopped", st.Name, st.State)
		}
	}
}

func TestUpStartsOnlyNamedServicesAndTheirDependencies(t *testing.T) {
	s := newStack(t, "services:"+svc("db", "block", "")+svc("api", "block", "    depends_on: [db]\n")+svc("other", "block", ""))
	if err := s.up("api"); err != nil {
		t.Fatal(err)
	}
	if st := s.status("other"); st.State != runner.StateCreated {
		t.Fatalf("other was not asked for but is %s", st.State)
	}
	if st := s.status("db"); st.State != runner.StateRunning {
		t.Fatalf("db (a dependency of api) is %s, want running", st.State)
	}
}

func TestServiceHealthyUsesStartInterval(t *testing.T) {
	// interval 1h: the dependency can only turn healthy within the test's
	// deadline if start_interval (50ms) is used during start_period.
	s := newStack(t, "services:"+
		svc("db", "block", `      READY_AFTER: 300ms
    healthcheck:
      test: ["CMD-SHELL", "test -f \"$$READY\""]
      interval: 1h
      start_period: 1m
      start_interval: 50ms
`)+svc("api", "block", "    depends_on:\n      db: {condition: service_healthy}\n"))
	start := time.Now()
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("up took %s; start_interval was not used", el)
	}
	if st := s.status("db"); st.Health != runner.HealthHealthy {
		t.Fatalf("db health %q, want healthy", st.Health)
	}
	s.startedBefore("db", "api")
	if st := s.status("api"); st.StartedAt.Before(*s.status("db").StartedAt) {
		t.Fatal("api started before db")
	}
}

func TestUnhealthyDependencyFailsDependent(t *testing.T) {
	s := newStack(t, "services:"+
		svc("db", "block", `    healthcheck:
      test: ["CMD", "false"]
      interval: 20ms
      retries: 2
`)+svc("api", "block", "    depends_on:\n      db: {condition: service_healthy}\n"))
	err := s.up()
	if err == nil || !strings.Contains(err.Error(), `"db" is unhealthy`) {
		t.Fatalf("want an error naming db as unhealthy, got %v", err)
	}
	if st := s.status("api"); st.State != runner.StateFailed {
		t.Fatalf("api is %s, want failed", st.State)
	}
	if indexOf(s.events(), "start_api") >= 0 {
		t.Fatal("api started although its dependency is unhealthy")
	}
}

func TestCompletedSuccessfully(t *testing.T) {
	s := newStack(t, "services:"+
		svc("migrate", "exit", "      CODE: \"0\"\n")+
		svc("api", "block", "    depends_on:\n      migrate: {condition: service_completed_successfully}\n"))
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	if st := s.status("migrate"); st.State != runner.StateCompleted {
		t.Fatalf("migrate is %s, want completed", st.State)
	}
	if st := s.status("api"); st.State != runner.StateRunning {
		t.Fatalf("api is %s, want running", st.State)
	}
}

func TestCompletedUnsuccessfullyFailsDependent(t *testing.T) {
	s := newStack(t, "services:"+
		svc("migrate", "exit", "      CODE: \"3\"\n")+
		svc("api", "block", "    depends_on:\n      migrate: {condition: service_completed_successfully}\n"))
	err := s.up()
	if err == nil || !strings.Contains(err.Error(), "did not complete successfully (exit code 3)") {
		t.Fatalf("want an error with migrate's exit code, got %v", err)
	}
	if indexOf(s.events(), "start_api") >= 0 {
		t.Fatal("api started although migrate failed")
	}
}

func TestOptionalDependencyMayFail(t *testing.T) {
	s := newStack(t, "services:"+
		svc("cache", "exit", "      CODE: \"1\"\n")+
		svc("api", "block", "    depends_on:\n      cache: {condition: service_completed_successfully, required: false}\n"))
	_ = s.up("api") // cache may or may not have exited when up returns
	s.waitFor("api", "running", func(st runner.ServiceStatus) bool { return st.State == runner.StateRunning })
	if st := s.status("cache"); st.State != runner.StateExited {
		t.Fatalf("cache is %s, want exited", st.State)
	}
	if !strings.Contains(s.sink.String(), `starting without optional dependency "cache"`) {
		t.Fatalf("no warning about the optional dependency:\n%s", s.sink)
	}
}

func TestRestartPolicies(t *testing.T) {
	cases := []struct {
		policy       string
		code         string
		wantRestarts int
		wantState    runner.State
	}{
		{"no", "1", 0, runner.StateExited},
		{"on-failure:2", "1", 2, runner.StateExited},
		{"on-failure", "0", 0, runner.StateCompleted},
	}
	for _, c := range cases {
		t.Run(c.policy, func(t *testing.T) {
			s := newStack(t, "services:"+svc("job", "exit", "      CODE: \""+c.code+"\"\n    restart: "+c.policy+"\n"))
			_ = s.up()
			st := s.waitFor("job", string(c.wantState), func(st runner.ServiceStatus) bool { return st.State == c.wantState })
			if st.Restarts != c.wantRestarts {
				t.Fatalf("restarts %d, want %d", st.Restarts, c.wantRestarts)
			}
			if st.LastExit == nil || strconv.Itoa(st.LastExit.Code) != c.code {
				t.Fatalf("last exit %+v, want code %s", st.LastExit, c.code)
			}
		})
	}
	for _, policy := range []string{"always", "unless-stopped"} {
		t.Run(policy, func(t *testing.T) {
			// Exit 0 is restarted too under these policies; a stop ends it.
			s := newStack(t, "services:"+svc("job", "exit", "      CODE: \"0\"\n    restart: "+policy+"\n"))
			_ = s.up()
			s.waitFor("job", "restarted twice", func(st runner.ServiceStatus) bool { return st.Restarts >= 2 })
			if err := s.r.Stop(t.Context(), []string{"job"}, runner.StopOptions{}); err != nil {
				t.Fatal(err)
			}
			st := s.status("job")
			if st.State != runner.StateStopped {
				t.Fatalf("after stop: %s, want stopped", st.State)
			}
			n := st.Restarts
			if err := s.r.Stop(t.Context(), []string{"job"}, runner.StopOptions{}); err != nil { // idempotent
				t.Fatal(err)
			}
			if s.status("job").Restarts != n {
				t.Fatal("a stopped service was restarted")
			}
		})
	}
}

func TestCrashLoopBacksOffAndFailsUp(t *testing.T) {
	s := newStack(t, "services:"+svc("bad", "exit", "      CODE: \"2\"\n    restart: always\n"+neverHC)+svc("good", "block", ""))
	err := s.up()
	if err == nil || !strings.Contains(err.Error(), "restart loop") {
		t.Fatalf("want a restart-loop error, got %v", err)
	}
	if st := s.status("good"); st.State != runner.StateRunning {
		t.Fatalf("a crashing service took down another: good is %s", st.State)
	}
	logs := s.sink.String()
	for _, d := range []string{"restarting in 100ms", "restarting in 200ms"} {
		if !strings.Contains(logs, d) {
			t.Fatalf("no %q in the log; backoff does not grow:\n%s", d, logs)
		}
	}
}

func TestBackoffDoubles(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	for i, w := range want {
		if got := runner.Backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := runner.Backoff(100); got != 30*time.Second {
		t.Errorf("backoff is not capped: %s", got)
	}
}

func TestStopGracePeriodThenKill(t *testing.T) {
	s := newStack(t, "services:"+svc("stubborn", "block", "      IGNORE_TERM: \"1\"\n    stop_grace_period: 200ms\n"+readyHC))
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.r.Stop(t.Context(), []string{"stubborn"}, runner.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("killed after %s, before its grace period", el)
	}
	st := s.status("stubborn")
	if st.LastExit == nil || st.LastExit.Signal != "killed" || st.LastExit.Code != -1 {
		t.Fatalf("last exit %+v, want killed by SIGKILL", st.LastExit)
	}
}

func TestStopSignal(t *testing.T) {
	// SIGINT is handled by the test service like SIGTERM; SIGUSR1 is not
	// and would kill it: a clean exit proves the right signal arrived.
	s := newStack(t, "services:"+svc("svc", "block", "    stop_signal: SIGINT\n"+readyHC))
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	if err := s.r.Stop(t.Context(), []string{"svc"}, runner.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := s.status("svc"); st.LastExit == nil || st.LastExit.Code != 0 {
		t.Fatalf("last exit %+v, want a clean exit on SIGINT", st.LastExit)
	}
}

func TestNothingSpawnedSurvivesStop(t *testing.T) {
	// Healthy means the child's pid file exists, so up returns only then.
	s := newStack(t, "services:"+svc("parent", "spawn", `      CHILD_PID: "{{DIR}}/child.pid"
    healthcheck:
      test: ["CMD-SHELL", "test -s \"$$CHILD_PID\""]
      interval: 1h
      start_period: 1m
      start_interval: 20ms
`))
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(s.dir, "child.pid"))
	pid, _ := strconv.Atoi(string(b))
	if pid == 0 {
		t.Fatalf("the service reported no child: %q", b)
	}
	if err := s.r.Down(t.Context(), runner.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		// It may be a zombie not yet reaped by init; check its state.
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if !strings.Contains(string(b), ") Z") {
			t.Fatalf("grandchild %d survived down: %s", pid, b)
		}
	}
}

func TestPortConflictNamesServiceAndHolder(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	s := newStack(t, "services:"+svc("web", "serve", fmt.Sprintf("    ports: [\"127.0.0.1:%d:%d\"]\n", port, port)))
	err = s.r.CheckPorts(nil)
	if err == nil {
		t.Fatal("no error for a port in use")
	}
	for _, want := range []string{fmt.Sprint(port), `"web"`, fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestRestartAlsoRestartsDependentsWithRestartTrue(t *testing.T) {
	s := newStack(t, "services:"+
		svc("db", "block", readyHC)+
		svc("api", "block", "    depends_on:\n      db: {condition: service_started, restart: true}\n")+
		svc("cron", "block", "    depends_on:\n      db: {condition: service_started}\n"))
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	apiPID, cronPID := s.status("api").ID, s.status("cron").ID
	if err := s.r.Restart(t.Context(), []string{"db"}, runner.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if s.status("api").ID == apiPID {
		t.Error("api (restart: true) was not restarted with db")
	}
	if s.status("cron").ID != cronPID {
		t.Error("cron (no restart: true) was restarted")
	}
}

// preparing is the process backend plus a Preparer that records its calls
// in the stack's event log, next to the services' own start and stop.
type preparing struct {
	process.Backend
	log   string
	state func(service string) runner.State // of the stack under test
}

func (p *preparing) record(what, name string) {
	f, err := os.OpenFile(p.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		fmt.Fprintf(f, "%s %s\n", what, name)
		f.Close()
	}
}

func (p *preparing) Prepare(_ context.Context, spec runner.Spec) (func(), error) {
	// What state the dependency db is in when api is prepared.
	p.record("prepare", spec.Service.Name+" db="+string(p.state("db")))
	return func() { p.record("undo", spec.Service.Name) }, nil
}

func TestPrepareRunsOnceDependenciesRunAndUndoesWhenNeverStarted(t *testing.T) {
	be := &preparing{}
	yaml := "services:" +
		svc("db", "block", "      READY_AFTER: 300ms\n"+readyHC) + svc("api", "block", "    depends_on:\n      db: {condition: service_healthy}\n")
	s := newStackWith(t, yaml, be)
	be.log, be.state = s.log, func(name string) runner.State { return s.status(name).State }
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	if st := s.status("api"); st.State != runner.StateRunning {
		t.Fatalf("api is %s, want running", st.State)
	}
	// db has no dependencies: nothing to prepare ahead. api is prepared
	// once db runs (and before it is healthy, 300ms later), and is not
	// undone since it started.
	ev := s.events()
	if indexOf(ev, "prepare_api_db=running") < 0 || indexOf(ev, "undo_api") >= 0 || len(ev) > 0 && strings.HasPrefix(ev[0], "prepare_db") {
		t.Fatalf("events %v: want api prepared while db runs, and no undo", ev)
	}

	// A dependent that never starts has what was prepared for it undone.
	be2 := &preparing{}
	s2 := newStackWith(t, "services:"+
		svc("db", "block", "    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 20ms\n      retries: 2\n")+
		svc("api", "block", "    depends_on:\n      db: {condition: service_healthy}\n"), be2)
	be2.log, be2.state = s2.log, func(name string) runner.State { return s2.status(name).State }
	if err := s2.up(); err == nil {
		t.Fatal("up succeeded with an unhealthy dependency")
	}
	// The undo comes before api's failure is reported, so before up
	// returns with it.
	ev = s2.events()
	if p, u := indexOf(ev, "prepare_api_db=running"), indexOf(ev, "undo_api"); p < 0 || u < p || indexOf(ev, "start_api") >= 0 {
		t.Fatalf("events %v: want api prepared, then undone, never started", ev)
	}
}

// testRunID makes each test runner's instance markers its own. A stop
// finds a service's processes (and its cgroup) by marker, so two runs of
// these tests at once (two packages, or two checkouts on one machine) that
// shared one would stop each other's services.
func testRunID() string {
	return fmt.Sprintf("test%d-%d", os.Getpid(), testRuns.Add(1))
}

var testRuns atomic.Int64

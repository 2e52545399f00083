package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/proc"
	"github.com/devstack/devstack/trace"
)

// devstackBin is the real binary, built once by TestMain.
var devstackBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "devstack-cli")
	if err != nil {
		panic(err)
	}
	devstackBin = filepath.Join(dir, "devstack")
	out, err := exec.Command("go", "build", "-race", "-o", devstackBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building devstack: %v\n%s", err, out)
		os.Exit(2)
	}
	images := snapshotImages()
	code := m.Run()
	images.removeNew()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs devstack commands in one project directory with a private
// state directory.
type cli struct {
	t     *testing.T
	dir   string
	state string
}

func newCLI(t *testing.T, dir string) *cli {
	c := &cli{t: t, dir: dir, state: t.TempDir()}
	t.Cleanup(func() {
		// Whatever happened, nothing of the test's stack may survive it.
		res := c.run("down")
		if res.code != 0 {
			t.Logf("cleanup down: %s", res.stderr)
		}
	})
	return c
}

// writeProject writes yaml as devstack.yaml in a new temp dir.
func writeProject(t *testing.T, yaml string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

type result struct {
	stdout, stderr string
	code           int
}

func (c *cli) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, devstackBin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "DEVSTACK_STATE_DIR="+c.state, "NO_COLOR=1")
	return cmd
}

func (c *cli) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("running devstack %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func (c *cli) must(args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("devstack %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func (c *cli) ps() []runner.ServiceStatus {
	c.t.Helper()
	r := c.must("ps", "--format", "json")
	var st []runner.ServiceStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		c.t.Fatalf("ps --format json: %v\n%s", err, r.stdout)
	}
	return st
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is dead, only not yet reaped.
	s := string(b)
	return !strings.Contains(s[strings.LastIndexByte(s, ')'):], ") Z")
}

// repoRoot is the module root, where the example devstack.yaml lives.
func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

func TestShopUpDetachedServesThroughEveryServiceAndDownLeavesNothing(t *testing.T) {
	shopOnFreePorts(t)
	c := newCLI(t, repoRoot(t))
	c.must("up", "-d")
	code, body := shopCheckout(t)
	if code != 200 {
		t.Fatalf("gateway: %d\n%s", code, body)
	}
	if missing := wentThrough(body, shopServices...); len(missing) > 0 {
		t.Errorf("the checkout did not go through %v:\n%s", missing, body)
	}
	var pids []int
	for _, s := range c.ps() {
		if s.Name == "build" {
			if s.State != runner.StateCompleted {
				t.Errorf("build: %s, want completed", s.State)
			}
			continue
		}
		if s.State != runner.StateRunning || s.Health != runner.HealthHealthy {
			t.Errorf("%s: %s/%s, want running/healthy", s.Name, s.State, s.Health)
		}
		pid, _ := strconv.Atoi(s.ID)
		pids = append(pids, pid)
	}
	if len(pids) != 5 {
		t.Fatalf("want 5 service pids, got %v", pids)
	}
	checkShopTrace(t, c)
	sup := supervisorPID(t, c)
	c.must("down")
	for _, pid := range append(pids, sup) {
		if alive(pid) {
			t.Errorf("pid %d is still alive after down", pid)
		}
	}
	if st := c.ps(); len(st) != 0 {
		t.Errorf("ps after down shows %v", st)
	}
	// Down, the trace is still there: listed from the summary file the
	// span store wrote as it closed, and drawn from the log.
	if _, err := os.Stat(filepath.Join(c.state, "shop", "spans", "summary")); err != nil {
		t.Errorf("no summary file after down: %v", err)
	}
	var list []trace.Summary
	if err := json.Unmarshal([]byte(c.must("traces", "--format", "json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Root != "gateway" || list[0].Spans != 5 {
		t.Fatalf("traces after down: %+v; want the one trace of the checkout, 5 hops from gateway", list)
	}
	if wf := c.must("trace", list[0].TraceID.String(), "--no-color").stdout; !strings.Contains(wf, "payments") {
		t.Errorf("trace after down does not draw the hops:\n%s", wf)
	}
}

func supervisorPID(t *testing.T, c *cli) int {
	t.Helper()
	var rec struct {
		Supervisor struct{ PID int } `json:"supervisor"`
	}
	matches, _ := filepath.Glob(filepath.Join(c.state, "*", "state.json"))
	if len(matches) != 1 {
		t.Fatalf("want one state.json, found %v", matches)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.Supervisor.PID
}

// orphanStack runs `sleep` under a shell that stays its parent: after a
// SIGKILL of devstack, the parent-death signal kills the shell, and the
// sleep is the orphan that cleanup must find.
const orphanStack = `
name: orphans
services:
  worker:
    x-devstack:
      run: "sleep 300; echo unreachable"
`

func TestSIGKILLedSupervisorLeavesOrphansThatDownCleansUp(t *testing.T) {
	c := newCLI(t, writeProject(t, orphanStack))
	c.must("up", "-d")
	// An unrelated process that cleanup must never touch.
	bystander := exec.Command("sleep", "300")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })

	sup := supervisorPID(t, c)
	orphans, err := proc.FindByMarkerPrefix("orphans@")
	if err != nil || len(orphans) != 1 {
		t.Fatalf("want the worker's processes under one marker, got %v (%v)", orphans, err)
	}
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, sup)
	left, _ := proc.FindByMarkerPrefix("orphans@")
	var survivors []int
	for _, pids := range left {
		survivors = append(survivors, pids...)
	}
	if len(survivors) == 0 {
		t.Fatal("test setup: expected the sleep to survive the supervisor")
	}
	r := c.must("down")
	if !strings.Contains(r.stderr, "left by a devstack that was killed") {
		t.Errorf("down did not report the cleanup: %s", r.stderr)
	}
	for _, pid := range survivors {
		if alive(pid) {
			t.Errorf("orphan %d survived down", pid)
		}
	}
	if !alive(bystander.Process.Pid) {
		t.Error("down killed an unrelated process")
	}
}

func TestRecordedPidReusedByAnotherProcessIsNotTouched(t *testing.T) {
	c := newCLI(t, writeProject(t, orphanStack))
	// A state record whose pid now belongs to an unrelated process (a
	// different start time): cleanup must leave it alone.
	bystander := exec.Command("sleep", "300")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })
	id, err := proc.Lookup(bystander.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(c.state, "orphans")
	os.MkdirAll(dir, 0o700)
	rec := fmt.Sprintf(`{"project":"orphans","run_id":"x","supervisor":{"pid":1,"start_time":1},
		"instances":{"worker":{"pid":%d,"start_time":%d}}}`, id.PID, id.StartTime+1)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("down")
	if !alive(bystander.Process.Pid) {
		t.Fatal("down killed a process that merely reused a recorded pid")
	}
	c.must("up", "-d") // up does the same cleanup first
	if !alive(bystander.Process.Pid) {
		t.Fatal("up killed a process that merely reused a recorded pid")
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		select {
		case <-deadline:
			t.Fatalf("pid %d did not exit", pid)
		case <-tick.C:
		}
	}
}

// stopOrderStack records each service's SIGTERM in stops.log.
const stopOrderStack = `
name: order
services:
  db:
    x-devstack: {run: "trap 'echo db >> stops.log; exit 0' TERM; touch db.ready; while :; do sleep 0.1; done"}
    healthcheck: {test: ["CMD", "test", "-f", "db.ready"], interval: 1h, start_period: 1m, start_interval: 50ms}
  api:
    x-devstack: {run: "trap 'echo api >> stops.log; exit 0' TERM; touch api.ready; while :; do sleep 0.1; done"}
    healthcheck: {test: ["CMD", "test", "-f", "api.ready"], interval: 1h, start_period: 1m, start_interval: 50ms}
    depends_on: {db: {condition: service_healthy}}
  web:
    x-devstack: {run: "trap 'echo web >> stops.log; exit 0' TERM; touch web.ready; while :; do sleep 0.1; done"}
    healthcheck: {test: ["CMD", "test", "-f", "web.ready"], interval: 1h, start_period: 1m, start_interval: 50ms}
    depends_on: {api: {condition: service_healthy}}
`

func TestForegroundCtrlCStopsInReverseDependencyOrder(t *testing.T) {
	dir := writeProject(t, stopOrderStack)
	c := newCLI(t, dir)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := c.command(ctx, "up")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &out, "order is up")
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("up exited with %v after Ctrl-C:\n%s", err, out.String())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "stops.log"))
	if got := strings.Fields(string(b)); strings.Join(got, ",") != "web,api,db" {
		t.Fatalf("stop order %v, want web, api, db\n%s", got, out.String())
	}
	if !strings.Contains(out.String(), "web | stopping: sent SIGTERM") {
		t.Errorf("foreground output does not say what it stops:\n%s", out.String())
	}
}

func TestForegroundUpFailsWithNonZeroExit(t *testing.T) {
	c := newCLI(t, writeProject(t, `
services:
  broken:
    x-devstack: {run: "exit 7"}
    healthcheck: {test: ["CMD", "true"], interval: 1h, start_period: 1m, start_interval: 50ms}
`))
	r := c.run("up")
	if r.code == 0 {
		t.Fatalf("up succeeded with a service that exits 7:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, `service "broken" exited (exit code 7)`) {
		t.Errorf("the failure is not explained:\n%s%s", r.stdout, r.stderr)
	}
}

func TestUpDetachedFailsWhenAServiceIsUnhealthy(t *testing.T) {
	c := newCLI(t, writeProject(t, `
services:
  sick:
    x-devstack: {run: "sleep 300"}
    healthcheck: {test: ["CMD", "false"], interval: 30ms, retries: 2}
`))
	r := c.run("up", "-d")
	if r.code == 0 || !strings.Contains(r.stderr, `service "sick" is unhealthy`) {
		t.Fatalf("want a non-zero exit naming the unhealthy service; got %d\n%s", r.code, r.stderr)
	}
	// The supervisor stays up for inspection: ps and logs work.
	st := c.ps()
	if len(st) != 1 || st[0].Health != runner.HealthUnhealthy {
		t.Fatalf("ps: %+v", st)
	}
	if r := c.must("logs", "sick"); !strings.Contains(r.stdout, "unhealthy") {
		t.Errorf("logs do not show the health verdict:\n%s", r.stdout)
	}
}

func TestPortConflictIsReportedBeforeAnythingStarts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	dir := writeProject(t, fmt.Sprintf(`
services:
  first:
    x-devstack: {run: "touch started-first; sleep 300"}
  web:
    x-devstack: {run: "sleep 300", port_env: PORT}
    ports: ["127.0.0.1:%d:%d"]
`, port, port))
	c := newCLI(t, dir)
	r := c.run("up", "-d")
	if r.code == 0 {
		t.Fatal("up succeeded on a port in use")
	}
	for _, want := range []string{fmt.Sprintf("port %d", port), `service "web"`, fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error does not name %s:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "started-first")); err == nil {
		t.Error("a service started although a port was in use")
	}
}

func TestBadFilesGiveOneClearErrorAndStartNothing(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"bad yaml": {"services:\n  a:\n    x-devstack: {run: \"touch ran\"}\n   bad: [\n", "devstack.yaml:"},
		"cycle": {`services:
  a: {x-devstack: {run: "touch ran"}, depends_on: [b]}
  b: {x-devstack: {run: "touch ran"}, depends_on: [a]}
`, "a -> b -> a"},
		"no way to run": {"services:\n  a:\n    environment: {A: b}\n", `service "a" has no way to run`},
		"unknown key":   {"services:\n  a:\n    x-devstack: {runn: \"touch ran\"}\n", `did you mean "run"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := writeProject(t, tc.yaml)
			c := newCLI(t, dir)
			for _, args := range [][]string{{"config"}, {"up", "-d"}} {
				r := c.run(args...)
				if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("devstack %v: exit %d, want an error containing %q:\n%s", args, r.code, tc.want, r.stderr)
				}
				if strings.Contains(r.stderr, "panic") {
					t.Errorf("panic:\n%s", r.stderr)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
				t.Error("a bad file started something")
			}
		})
	}
}

func TestLogsAfterDownAndStopStartRestart(t *testing.T) {
	c := newCLI(t, writeProject(t, `
name: life
services:
  talker:
    x-devstack: {run: "echo hello-$$DEVSTACK_SERVICE; exec sleep 300"}
`))
	c.must("up", "-d")
	c.must("stop", "talker")
	if st := c.ps(); st[0].State != runner.StateStopped {
		t.Fatalf("after stop: %s", st[0].State)
	}
	c.must("start", "talker")
	c.must("restart", "talker")
	st := c.ps()
	if st[0].State != runner.StateRunning {
		t.Fatalf("after restart: %s", st[0].State)
	}
	c.must("down")
	r := c.must("logs", "talker")
	if n := strings.Count(r.stdout, "hello-talker"); n != 3 {
		t.Fatalf("want 3 starts in the logs after down, got %d:\n%s", n, r.stdout)
	}
	if r := c.must("logs", "--tail", "1", "talker"); strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("--tail 1 printed:\n%s", r.stdout)
	}
	// From a directory without the project file, by name.
	elsewhere := &cli{t: t, dir: t.TempDir(), state: c.state}
	if r := elsewhere.must("-p", "life", "logs", "talker"); strings.Count(r.stdout, "hello-talker") != 3 {
		t.Fatalf("-p life logs from another directory: want 3 starts, got:\n%s", r.stdout)
	}
	if r := elsewhere.run("-p", "life", "logs", "talkr"); r.code == 0 || !strings.Contains(r.stderr, `no service "talkr" in project "life"; services are: talker`) {
		t.Fatalf("-p life logs talkr: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := c.run("stop", "nosuch"); r.code == 0 || !strings.Contains(r.stderr, `no service "nosuch"`) {
		t.Fatalf("stop of an unknown service: %d %s", r.code, r.stderr)
	}
}

// shopCheckout sends one checkout through the shop's gateway, with
// credentials that the recorded trace must not show.
// shopOnFreePorts moves the example shop's ports (SHOP_*_PORT in
// examples/shop/devstack.yaml, 18080-18085 by default) to free ones for
// the test, so that a user's running shop or another test run on the
// machine cannot fail it. The CLI inherits the environment.
func shopOnFreePorts(t *testing.T) {
	t.Helper()
	for _, name := range []string{"GATEWAY", "ORDERS", "INVENTORY", "PAYMENTS", "FRAUD"} {
		t.Setenv("SHOP_"+name+"_PORT", strconv.Itoa(freeLoopbackPort(t)))
	}
}

// shopURL is the URL of path at the shop's gateway, as shopOnFreePorts
// placed it.
func shopURL(t *testing.T, path string) string {
	t.Helper()
	port := os.Getenv("SHOP_GATEWAY_PORT")
	if port == "" {
		t.Fatal("the shop's ports were not moved: call shopOnFreePorts first")
	}
	return "http://127.0.0.1:" + port + path
}

func shopCheckout(t *testing.T) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", shopURL(t, "/checkout?item=sku-1&qty=2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer top-secret")
	req.Header.Set("Cookie", "session=also-secret")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("checkout: reading the body: %v", err)
	}
	return resp.StatusCode, string(b)
}

// checkShopTrace asserts that the one request sent through the shop
// (shopCheckout) made one trace with a span per hop, parented correctly,
// with orders' dropped context linked by inference, and its credentials
// recorded redacted.
func checkShopTrace(t *testing.T, c *cli) {
	t.Helper()
	var list []trace.Summary
	if err := json.Unmarshal([]byte(c.must("traces", "--format", "json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("want exactly one trace for one request, got %d: %+v", len(list), list)
	}
	if list[0].Root != "gateway" || list[0].Spans != 5 || list[0].Errors != 0 {
		t.Errorf("summary %+v, want root gateway, 5 hops, no errors", list[0])
	}
	var spans []*trace.Span
	if err := json.Unmarshal([]byte(c.must("trace", list[0].TraceID.String(), "--format", "json").stdout), &spans); err != nil {
		t.Fatal(err)
	}
	by := map[string]*trace.Span{}
	for _, sp := range spans {
		by[sp.Caller+">"+sp.Callee] = sp
	}
	hop := func(caller, callee string) *trace.Span {
		sp := by[caller+">"+callee]
		if sp == nil {
			t.Fatalf("no hop %s → %s in %v", caller, callee, keys(by))
		}
		return sp
	}
	gw := hop("", "gateway")
	ord := hop("gateway", "orders")
	inv := hop("orders", "inventory")
	pay := hop("orders", "payments")
	fr := hop("payments", "fraud")
	if gw.ParentID.IsValid() {
		t.Errorf("the gateway hop should be the root, has parent %s", gw.ParentID)
	}
	for _, link := range []struct {
		child, parent *trace.Span
		inferred      bool
	}{{ord, gw, false}, {inv, ord, true}, {pay, ord, true}, {fr, pay, false}} {
		if link.child.ParentID != link.parent.SpanID || link.child.Inferred != link.inferred {
			t.Errorf("%s → %s: parent %s inferred %v, want parent %s (%s → %s) inferred %v", link.child.Caller, link.child.Callee,
				link.child.ParentID, link.child.Inferred, link.parent.SpanID, link.parent.Caller, link.parent.Callee, link.inferred)
		}
	}
	// One checkout in flight: orders' inferred calls are certain.
	for _, sp := range []*trace.Span{inv, pay} {
		if sp.Candidates != 1 || sp.Ambiguous() {
			t.Errorf("%s → %s inferred among %d requests, want 1 (certain)", sp.Caller, sp.Callee, sp.Candidates)
		}
	}
	for _, name := range []string{"Authorization", "Cookie"} {
		i := slices.IndexFunc(gw.ReqHeaders, func(h trace.Header) bool { return h.Name == name })
		if i < 0 {
			t.Errorf("the gateway hop did not record the request's %s header: %+v", name, gw.ReqHeaders)
		} else if v := gw.ReqHeaders[i].Value; v != "[redacted]" {
			t.Errorf("%s recorded as %q; want [redacted]", name, v)
		}
	}
	// The waterfall says why two links are inferred; ps says it too.
	wf := c.must("trace", list[0].TraceID.String(), "--no-color").stdout
	if !strings.Contains(wf, "orders does not propagate trace context") {
		t.Errorf("the waterfall does not name the broken propagation:\n%s", wf)
	}
	if ps := c.must("ps").stdout; !strings.Contains(ps, "orders does not propagate trace context") {
		t.Errorf("ps does not report the broken propagation:\n%s", ps)
	}
}

func keys(m map[string]*trace.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// `traces` run next to a stack's file finds its state from the record
// its supervisor left, without loading the file (which costs more than
// the answer): up or down, it answers even while the file does not
// parse, mid-edit. A file that never ran is loaded, and its error shows.
func TestTracesDoNotLoadTheFileOfAStackThatRan(t *testing.T) {
	dir := writeProject(t, "name: fastpath\nservices:\n  worker:\n    x-devstack:\n      run: \"sleep 300\"\n")
	file := filepath.Join(dir, "devstack.yaml")
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	broken := []byte("services: [unclosed\n")
	c := newCLI(t, dir)
	c.must("up", "-d")
	if err := os.WriteFile(file, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.run("traces")
	if err := os.WriteFile(file, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if r.code != 0 {
		t.Fatalf("traces with the stack up and its file broken: exit %d\n%s", r.code, r.stderr)
	}
	c.must("down")
	if err := os.WriteFile(file, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.run("traces", "--format", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("traces with the stack down and its file broken: exit %d, stdout %q, stderr %q; want [] (no traces were recorded)", r.code, r.stdout, r.stderr)
	}
	// Named, from a directory without any project file: its state answers.
	elsewhere := &cli{t: t, dir: t.TempDir(), state: c.state}
	if r := elsewhere.run("-p", "fastpath", "traces", "--format", "json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("-p fastpath traces from another directory, down: exit %d, stdout %q, stderr %q; want []", r.code, r.stdout, r.stderr)
	}
	if r := elsewhere.run("-p", "fastpth", "traces"); r.code == 0 || !strings.Contains(r.stderr, `no project named "fastpth" has run`) {
		t.Errorf("-p with a typo, no file: exit %d, stderr %q; want it to say the name is unknown", r.code, r.stderr)
	}
	// Another project name for the same file: not the state found.
	if r := c.run("-p", "other", "traces"); r.code == 0 || !strings.Contains(r.stderr, "devstack.yaml") {
		t.Errorf("traces -p other next to the broken file: exit %d, stdout %q, stderr %q; want the file's error, not fastpath's traces", r.code, r.stdout, r.stderr)
	}
	// Another directory's file, which never ran.
	other := writeProject(t, "services: [unclosed\n")
	r = newCLI(t, other).run("traces")
	if r.code == 0 || !strings.Contains(r.stderr, "devstack.yaml") {
		t.Errorf("traces next to a broken file that never ran: exit %d, stderr %q; want the file's error", r.code, r.stderr)
	}
	if err := os.WriteFile(file, good, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Before the first up there is nothing to read: logs and traces say so,
// and what to run, rather than showing a missing file.
func TestLogsAndTracesBeforeAnyUpSayToRunUp(t *testing.T) {
	c := newCLI(t, writeProject(t, "name: fresh\nservices:\n  worker:\n    x-devstack:\n      run: \"sleep 300\"\n"))
	for _, args := range [][]string{{"logs"}, {"traces"}} {
		r := c.run(args...)
		if r.code == 0 || !strings.Contains(r.stderr, "recorded for fresh yet") || !strings.Contains(r.stderr, "devstack up") || strings.Contains(r.stderr, "no such file") {
			t.Errorf("devstack %s before up: exit %d, stderr %q; want it to say nothing is recorded yet and to run devstack up", args[0], r.code, r.stderr)
		}
	}
}

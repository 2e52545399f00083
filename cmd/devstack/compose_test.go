package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
)

// Every Compose key the service's backend does not honour is named, once,
// with what happens instead; honoured keys are not.
func TestConfigWarnsAboutEveryKeyTheBackendDoesNotHonour(t *testing.T) {
	dir := writeProject(t, `services:
  api:
    image: example/api
    command: [serve]
    volumes: [./data:/data]
    user: "1000"
    environment: {A: "1"}
    x-devstack: {run: "exec sleep 300", backend: process}
  worker:
    command: [work]
    mem_limit: 64m
    pids_limit: 50
    x-devstack: {run: "exec sleep 300"}
  db:
    image: postgres
    deploy:
      placement: {constraints: [node.role==manager]}
    x-devstack: {run: "exec sleep 300", backend: process}
`)
	c := newCLI(t, dir)
	r := c.must("config", "--services")
	for _, want := range []string{
		`service "api" runs as a process, which does not honour: `,
		`volumes (not mounted: the process sees the host's files)`,
		`user (not applied: the process runs as the user who ran devstack)`,
		// worker has no image or build: its command is for nothing.
		`service "worker" runs as a process, which does not honour: command (not used: the service runs x-devstack.run as a process); mem_limit, pids_limit (not applied: devstack sets no memory, CPU or process-count limit on a process`,
		`service "db" runs as a process, which does not honour: deploy.placement (`,
		// api and db say what they run as containers too: not ignored,
		// kept for the docker backend, and said once.
		"note: api, db run x-devstack.run as processes; their command, image are what they run as containers",
	} {
		if strings.Count(r.stderr, want) != 1 {
			t.Errorf("config's warnings name %q %d times, want once:\n%s", want, strings.Count(r.stderr, want), r.stderr)
		}
	}
	for _, not := range []string{"environment", "image (", `command, image (`} {
		if strings.Contains(r.stderr, not) {
			t.Errorf("config warned about %q, which a process honours or the docker backend uses:\n%s", not, r.stderr)
		}
	}
	// up warns about what is ignored, and leaves the note to config.
	r = c.must("up", "-d")
	if !strings.Contains(r.stderr, `service "api" runs as a process, which does not honour: `) || strings.Contains(r.stderr, "note:") || strings.Contains(r.stderr, "image") {
		t.Errorf("up's warnings: want api's ignored keys and no word of the keys kept for containers:\n%s", r.stderr)
	}
}

func TestVersionAndUnknownCommandsAndFlags(t *testing.T) {
	c := &cli{t: t, dir: t.TempDir(), state: t.TempDir()}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if r := c.must(args...); !strings.HasPrefix(r.stdout, "devstack ") {
			t.Errorf("devstack %s printed %q", args[0], r.stdout)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"confg"}, `unknown command "confg"; did you mean "config"?`},
		{[]string{"stp"}, `unknown command "stp"; did you mean "stop"?`},
		{[]string{"xyzzy"}, `unknown command "xyzzy"`},
		{[]string{"logs", "--tial", "3"}, `unknown flag: --tial; did you mean --tail?`},
		{[]string{"down", "--volume"}, `unknown flag: --volume; did you mean --volumes?`},
		{[]string{"build"}, `unknown command "build": a docker compose command; devstack builds the services with build: when it starts a stack`},
	} {
		r := c.run(tt.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("devstack %s: exit %d, stderr %q; want non-zero and %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
	}
}

// stop, start and restart with no service mean all; every command works
// from a subdirectory of the project, and with -p from anywhere;
// logs --tail 0 prints nothing before following.
func TestComposeHabitsStopAllSubdirAndProjectName(t *testing.T) {
	dir := writeProject(t, `
name: habits
services:
  one:
    x-devstack: {run: "echo hello-$$DEVSTACK_SERVICE; exec sleep 300"}
  two:
    x-devstack: {run: "echo hello-$$DEVSTACK_SERVICE; exec sleep 300"}
`)
	c := newCLI(t, dir)
	c.must("up", "-d")
	states := func(cl *cli) map[string]runner.State {
		out := map[string]runner.State{}
		for _, s := range cl.ps() {
			out[s.Name] = s.State
		}
		return out
	}
	sub := filepath.Join(dir, "src", "pkg")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	inSub := &cli{t: t, dir: sub, state: c.state}
	elsewhere := &cli{t: t, dir: t.TempDir(), state: c.state}

	inSub.must("stop")
	for name, st := range states(c) {
		if st != runner.StateStopped {
			t.Errorf("after stop with no service (from a subdirectory), %s is %s", name, st)
		}
	}
	elsewhere.must("-p", "habits", "start")
	for name, st := range states(inSub) {
		if st != runner.StateRunning {
			t.Errorf("after -p habits start from elsewhere, %s is %s", name, st)
		}
	}
	c.must("restart")
	if r := c.must("logs"); strings.Count(r.stdout, "hello-one") != 3 || strings.Count(r.stdout, "hello-two") != 3 {
		t.Errorf("after up, stop+start and restart of all, want 3 starts of each:\n%s", r.stdout)
	}
	if r := c.must("logs", "--tail", "0"); r.stdout != "" {
		t.Errorf("logs --tail 0 printed:\n%s", r.stdout)
	}
	if r := elsewhere.must("-p", "habits", "ps"); !strings.Contains(r.stdout, "one") {
		t.Errorf("-p habits ps from elsewhere:\n%s", r.stdout)
	}
	elsewhere.must("-p", "habits", "down")
	if r := elsewhere.run("-p", "nosuchproject", "ps"); r.code == 0 || !strings.Contains(r.stderr, `no project named "nosuchproject"`) {
		t.Errorf("-p nosuchproject ps: exit %d, %s", r.code, r.stderr)
	}
}

// up -d prints every service's start: it follows the events before the
// supervisor starts anything.
func TestUpDetachedPrintsEveryStart(t *testing.T) {
	var yaml strings.Builder
	yaml.WriteString("services:\n")
	for i := range 6 {
		fmt.Fprintf(&yaml, "  s%d:\n    x-devstack: {run: \"exec sleep 300\"}\n", i)
	}
	c := newCLI(t, writeProject(t, yaml.String()))
	// What makes it so: a supervisor started for up -d starts nothing
	// until the client, listening, asks.
	sup := c.command(t.Context(), "supervise", "--client-up")
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Process.Kill(); sup.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r := c.run("ps", "--format", "json"); r.code == 0 && strings.Contains(r.stdout, `"name"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the supervisor did not answer within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range c.ps() {
		if s.State != runner.StateCreated {
			t.Errorf("before any client asked, %s is %s; want created", s.Name, s.State)
		}
	}
	c.must("down")
	r := c.must("up", "-d")
	for i := range 6 {
		if want := fmt.Sprintf("s%d: started", i); !strings.Contains(r.stderr, want) {
			t.Errorf("up -d did not print %q:\n%s", want, r.stderr)
		}
	}
}

// A service without a healthcheck that crash-loops fails up -d, as one
// whose healthcheck fails does.
func TestUpDetachedFailsWhenAServiceWithoutHealthcheckCrashLoops(t *testing.T) {
	c := newCLI(t, writeProject(t, `
services:
  ok:
    x-devstack: {run: "exec sleep 300"}
  loop:
    x-devstack: {run: "sleep 0.05; echo bad config >&2; exit 3"}
    restart: always
`))
	r := c.run("up", "-d")
	if r.code == 0 || !strings.Contains(r.stderr, `service "loop" crashed 3 times while starting`) {
		t.Fatalf("want a non-zero exit naming the restart loop; got %d\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, `service "ok"`) {
		t.Errorf("the healthy service was named as failing:\n%s", r.stderr)
	}
}

// exec runs in a process service's workdir and environment (its private
// PORT included), run runs a one-off there, port prints where callers
// reach a port, top lists the process; exit codes come back.
func TestProcessExecRunPortTop(t *testing.T) {
	port := freeLoopbackPort(t)
	dir := writeProject(t, fmt.Sprintf(`
services:
  web:
    x-devstack: {run: "exec sleep 300", port_env: PORT, workdir: sub}
    ports: ["127.0.0.1:%d:8000"]
    environment: {GREETING: hi}
`, port))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t, dir)
	c.must("up", "-d")
	r := c.must("exec", "web", "sh", "-c", `echo "$GREETING $PORT $(pwd)"`)
	f := strings.Fields(r.stdout)
	if len(f) != 3 || f[0] != "hi" || f[2] != filepath.Join(dir, "sub") {
		t.Fatalf("exec printed %q; want the greeting, the private port and %s", r.stdout, filepath.Join(dir, "sub"))
	}
	if f[1] == "" || f[1] == strconv.Itoa(port) {
		t.Errorf("exec's PORT is %q; want the private port, not the published %d", f[1], port)
	}
	if r := c.run("exec", "web", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exec of exit 7: code %d", r.code)
	}
	if r := c.must("run", "--rm", "web", "sh", "-c", `echo "$GREETING $DEVSTACK_SERVICE $(pwd)"`); r.stdout != "hi web "+filepath.Join(dir, "sub")+"\n" {
		t.Errorf("run printed %q", r.stdout)
	}
	if r := c.must("port", "web", "8000"); r.stdout != fmt.Sprintf("127.0.0.1:%d\n", port) {
		t.Errorf("port printed %q", r.stdout)
	}
	if r := c.run("port", "web", "81"); r.code == 0 || !strings.Contains(r.stderr, "its ports are 8000") {
		t.Errorf("port of an undeclared port: %d %s", r.code, r.stderr)
	}
	if r := c.must("top"); !strings.Contains(r.stdout, "sleep 300") {
		t.Errorf("top:\n%s", r.stdout)
	}
	c.must("stop", "web")
	if r := c.run("exec", "web", "true"); r.code == 0 || !strings.Contains(r.stderr, `service "web" is stopped, not running`) {
		t.Errorf("exec in a stopped service: %d %s", r.code, r.stderr)
	}
}

// ulimits apply to a process service, as to a container.
func TestProcessUlimits(t *testing.T) {
	c := newCLI(t, writeProject(t, `
services:
  web:
    x-devstack: {run: "exec sleep 300"}
    ulimits: {nofile: {soft: 100, hard: 200}}
`))
	c.must("up", "-d")
	st := c.ps()
	limits, err := os.ReadFile("/proc/" + st[0].ID + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Max open files\s+100\s+200\s`).Match(limits) {
		t.Errorf("the service's nofile limit is not 100/200:\n%s", limits)
	}
}

// A process service finds its secrets and configs through its
// environment: *_FILE variables that name /run/secrets/<name> or a
// config's target point at files with the content, and
// DEVSTACK_SECRETS_DIR at the secrets; all gone when it stops.
func TestProcessSecretsAndConfigs(t *testing.T) {
	dir := writeProject(t, `
services:
  db:
    x-devstack: {run: "exec sleep 300"}
    environment:
      PASSWORD_FILE: /run/secrets/db_password
      TOKEN_FILE: /run/secrets/token
      CONF: /etc/app.conf
    secrets: [db_password, token]
    configs: [{source: app, target: /etc/app.conf}]
secrets:
  db_password: {file: ./pw.txt}
  token: {environment: API_TOKEN}
configs:
  app: {content: "level=debug"}
`)
	if err := os.WriteFile(filepath.Join(dir, "pw.txt"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("API_TOKEN", "tok-123")
	c := newCLI(t, dir)
	c.must("up", "-d")
	r := c.must("exec", "db", "sh", "-c", `cat "$PASSWORD_FILE"; echo; cat "$TOKEN_FILE"; echo; cat "$CONF"; echo; cat "$DEVSTACK_SECRETS_DIR/db_password"; echo; echo "$DEVSTACK_SECRETS_DIR"`)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 5 || lines[0] != "s3cret" || lines[1] != "tok-123" || lines[2] != "level=debug" || lines[3] != "s3cret" {
		t.Fatalf("the process read:\n%s\nstderr: %s", r.stdout, r.stderr)
	}
	secrets := lines[4]
	if fi, err := os.Stat(filepath.Dir(filepath.Dir(secrets))); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the secrets' directory %s: %v %v; want mode 0700", filepath.Dir(filepath.Dir(secrets)), fi, err)
	}
	c.must("down")
	if _, err := os.Stat(secrets); !os.IsNotExist(err) {
		t.Errorf("after down, %s is still there (%v)", secrets, err)
	}
}

// up -d SERVICE for a service behind a profile starts it, as docker
// compose up does.
func TestUpNamedProfiledServiceStartsIt(t *testing.T) {
	c := newCLI(t, writeProject(t, `
services:
  app:
    x-devstack: {run: "exec sleep 300"}
  tool:
    x-devstack: {run: "exec sleep 300"}
    profiles: [debug]
`))
	c.must("up", "-d", "tool")
	st := map[string]runner.State{}
	for _, s := range c.ps() {
		st[s.Name] = s.State
	}
	if st["tool"] != runner.StateRunning {
		t.Errorf("after up -d tool, tool is %q (%v)", st["tool"], st)
	}
	// Without the profile, tool is left out of the file as loaded, not
	// removed from it: nothing changed, and up -d starts what is missing.
	if r := c.must("ps"); strings.Contains(r.stderr, "changed") {
		t.Errorf("ps after up -d tool says the file changed:\n%s", r.stderr)
	}
	if r := c.must("up", "-d"); !strings.Contains(r.stderr, "already running") {
		t.Errorf("up -d after up -d tool handed the stack over:\n%s", r.stderr)
	}
}

// A published range ("lo-hi:8000") gets its first free port, as with
// Compose; port says which.
func TestPublishedPortRange(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	lo := busy.Addr().(*net.TCPAddr).Port
	if lo > 65000 {
		t.Skipf("port %d leaves no room for a range above it", lo)
	}
	c := newCLI(t, writeProject(t, fmt.Sprintf(`
services:
  web:
    x-devstack: {run: "exec sleep 300", port_env: PORT}
    ports: ["127.0.0.1:%d-%d:8000"]
`, lo, lo+20)))
	c.must("config")
	c.must("up", "-d")
	r := c.must("port", "web", "8000")
	var got int
	if _, err := fmt.Sscanf(r.stdout, "127.0.0.1:%d", &got); err != nil || got <= lo || got > lo+20 {
		t.Fatalf("port printed %q; want a port of %d-%d other than the busy %d", r.stdout, lo, lo+20, lo)
	}
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", got)); err == nil {
		l.Close()
		t.Errorf("port %d, picked for web, is not held by the stack", got)
	}
	if r := c.must("ps"); strings.Contains(r.stderr, "changed since") {
		t.Errorf("the picked port made ps think the file changed:\n%s", r.stderr)
	}
}

// compose-go's own findings (an obsolete version: key, a yes/no boolean)
// read as devstack's warnings do, not as log records.
func TestComposeGoWarningsReadAsWarnings(t *testing.T) {
	dir := writeProject(t, `version: "3.8"
services:
  web:
    x-devstack: {run: "exec sleep 300"}
`)
	r := newCLI(t, dir).must("config", "--services")
	if !strings.Contains(r.stderr, "warning: ") || !strings.Contains(r.stderr, "the attribute `version` is obsolete") || strings.Contains(r.stderr, "level=") {
		t.Errorf("config's stderr:\n%s\nwant compose-go's version warning as a plain warning line", r.stderr)
	}
}

// The docker compose flags users type do what they do in Compose where
// devstack can (up --wait, up -d --build on a running stack, ps -q,
// --services and -a, config -q, logs --no-log-prefix, down
// --remove-orphans; stop -t has a test of its own), and the others fail
// saying what devstack does instead.
func TestComposeFlagHabits(t *testing.T) {
	dir := writeProject(t, `
services:
  web:
    x-devstack: {run: "echo hello-web; exec sleep 300", build: "echo built >> builds.txt"}
  api:
    x-devstack: {run: "exec sleep 300"}
`)
	c := newCLI(t, dir)
	builds := func() int {
		b, _ := os.ReadFile(filepath.Join(dir, "builds.txt"))
		return strings.Count(string(b), "built")
	}
	c.must("up", "--wait", "--wait-timeout", "60") // seconds, as docker compose takes them
	ids := strings.Fields(c.must("ps", "-q").stdout)
	if len(ids) != 2 || builds() != 1 {
		t.Fatalf("up --wait: ps -q printed %q, %d builds; want two ids and one build", ids, builds())
	}
	if r := c.must("ps", "--services"); r.stdout != "api\nweb\n" {
		t.Errorf("ps --services printed %q", r.stdout)
	}
	if r := c.must("ps", "-a"); !strings.Contains(r.stdout, "running") {
		t.Errorf("ps -a printed %q", r.stdout)
	}
	if r := c.must("config", "-q"); r.stdout != "" {
		t.Errorf("config -q printed %q", r.stdout)
	}
	if r := c.must("logs", "--no-log-prefix", "web"); !strings.Contains(r.stdout, "\nhello-web\n") && !strings.HasPrefix(r.stdout, "hello-web\n") {
		t.Errorf("logs --no-log-prefix printed:\n%s", r.stdout)
	}

	// --build on a running stack builds again and restarts the processes.
	r := c.must("up", "-d", "--build")
	if !strings.Contains(r.stderr, "--build") || builds() != 2 {
		t.Fatalf("up -d --build on a running stack: %d builds, stderr:\n%s", builds(), r.stderr)
	}
	if now := strings.Fields(c.must("ps", "-q").stdout); len(now) != 2 || now[0] == ids[0] || now[1] == ids[1] {
		t.Errorf("up -d --build: ids %v, before %v; want new processes", now, ids)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"down", "--rmi", "all"}, "devstack keeps images"},
		{[]string{"up", "--no-deps", "web"}, "--except"},
	} {
		if r := c.run(tt.args...); r.code == 0 || !strings.Contains(r.stderr, "a docker compose flag; ") || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("devstack %s: exit %d, stderr %q; want non-zero, saying what devstack does instead (%s)", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
	}
	// exec -it and run -it, as typed for docker compose.
	if r := c.must("exec", "-it", "web", "echo", "it"); r.stdout != "it\n" {
		t.Errorf("exec -it printed %q", r.stdout)
	}
	if r := c.must("run", "-it", "--rm", "web", "echo", "it"); r.stdout != "it\n" {
		t.Errorf("run -it printed %q", r.stdout)
	}
	c.must("down", "--remove-orphans")
}

// run starts what the service depends on first, as docker compose run
// does (and leaves it running), unless --no-deps; the service itself is
// not started.
func TestRunStartsWhatTheServiceDependsOn(t *testing.T) {
	c := newCLI(t, writeProject(t, `
services:
  migrate:
    x-devstack: {run: "exec sleep 300"}
    depends_on: [db]
  db:
    x-devstack: {run: "exec sleep 300"}
`))
	if r := c.must("run", "--rm", "--no-deps", "migrate", "echo", "alone"); r.stdout != "alone\n" {
		t.Errorf("run --no-deps printed %q", r.stdout)
	}
	if r := c.must("ps"); !strings.Contains(r.stderr, "is not running") {
		t.Fatalf("run --no-deps started something:\n%s%s", r.stdout, r.stderr)
	}
	if r := c.must("run", "--rm", "migrate", "echo", "with-db"); r.stdout != "with-db\n" {
		t.Errorf("run printed %q", r.stdout)
	}
	st := map[string]runner.State{}
	for _, s := range c.ps() {
		st[s.Name] = s.State
	}
	if st["db"] != runner.StateRunning || st["migrate"] == runner.StateRunning {
		t.Errorf("after run migrate: %v; want db running, migrate not", st)
	}
}

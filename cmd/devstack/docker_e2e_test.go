package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/docker"
)

// End-to-end tests of the Docker backend through the real binary. They run
// against the engine DOCKER_HOST (or the docker context) names, and skip
// when none answers, unless DEVSTACK_REQUIRE_DOCKER=1 (CI), which makes
// them fail instead. Each test runs its own project (-p), so that nothing
// it leaves behind can be mistaken for another's, and removes it whatever
// happens.

// requireEngine returns a backend on the test's engine, or skips.
func requireEngine(t *testing.T) *docker.Backend {
	t.Helper()
	d, err := docker.New(t.Context())
	if err != nil {
		if os.Getenv("DEVSTACK_REQUIRE_DOCKER") == "1" {
			t.Fatalf("DEVSTACK_REQUIRE_DOCKER=1 but the docker engine is not available: %v", err)
		}
		t.Skipf("skipping: docker engine not available (set DEVSTACK_REQUIRE_DOCKER=1 to fail instead): %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// dockerProject runs devstack commands on one named project (-p).
type dockerProject struct {
	*cli
	name string
	d    *docker.Backend // nil when the test needs no engine
}

// newDockerProject is newCLI for project name in dir. Cleanup runs
// `down -v`, then removes by label whatever down left (and says so).
// COMPOSE_PROJECT_NAME names the project too, so that newCLI's own
// cleanup (a `down` without -p) stops this project, never another one
// that happens to use the file's name.
func newDockerProject(t *testing.T, dir, name string, d *docker.Backend) *dockerProject {
	t.Setenv("COMPOSE_PROJECT_NAME", name)
	p := &dockerProject{cli: newCLI(t, dir), name: name, d: d}
	t.Cleanup(func() {
		if r := p.run("down", "-v"); r.code != 0 {
			t.Logf("cleanup down -v: %s", r.stderr)
		}
		if d == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if left := p.leftovers(ctx); len(left) > 0 {
			t.Logf("cleanup: removing what down left: %v", left)
			if err := d.Down(ctx, name, true); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	})
	return p
}

func (p *dockerProject) run(args ...string) result {
	p.t.Helper()
	return p.cli.run(append([]string{"-p", p.name}, args...)...)
}

// must is cli.must with -p; a failure also shows the supervisor's log,
// where a detached up's reasons are.
func (p *dockerProject) must(args ...string) result {
	p.t.Helper()
	r := p.run(args...)
	if r.code != 0 {
		log, _ := os.ReadFile(filepath.Join(p.state, p.name, "supervisor.log"))
		p.t.Fatalf("devstack -p %s %s: exit %d\nstdout:\n%s\nstderr:\n%s\nsupervisor.log:\n%s",
			p.name, strings.Join(args, " "), r.code, r.stdout, r.stderr, log)
	}
	return r
}

func (p *dockerProject) ps() map[string]runner.ServiceStatus {
	p.t.Helper()
	r := p.must("ps", "--format", "json")
	var st []runner.ServiceStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		p.t.Fatalf("ps --format json: %v\n%s", err, r.stdout)
	}
	by := map[string]runner.ServiceStatus{}
	for _, s := range st {
		by[s.Name] = s
	}
	return by
}

// leftovers lists the containers and networks labelled with the project,
// as `docker ps -a --filter label=dev.devstack.project=<name>` would.
func (p *dockerProject) leftovers(ctx context.Context) []string {
	p.t.Helper()
	f := make(client.Filters).Add("label", docker.LabelProject+"="+p.name)
	cs, err := p.d.Client().ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		p.t.Fatalf("listing containers of %s: %v", p.name, err)
	}
	ns, err := p.d.Client().NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		p.t.Fatalf("listing networks of %s: %v", p.name, err)
	}
	var left []string
	for _, c := range cs.Items {
		left = append(left, fmt.Sprintf("container %s (%s)", strings.TrimPrefix(c.Names[0], "/"), c.State))
	}
	for _, n := range ns.Items {
		left = append(left, "network "+n.Name)
	}
	return left
}

// projectName is unique to the test and this run of the tests.
func projectName(what string) string {
	return fmt.Sprintf("e2e-%s-%d", what, os.Getpid())
}

// get fetches url and returns the status and body.
func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// wentThrough reports the services missing from a shop answer, which
// names every service the request passed.
func wentThrough(body string, services ...string) (missing []string) {
	for _, s := range services {
		if !strings.Contains(body, `"service": "`+s+`"`) && !strings.Contains(body, `"service":"`+s+`"`) {
			missing = append(missing, s)
		}
	}
	return missing
}

var shopServices = []string{"gateway", "orders", "inventory", "payments", "fraud"}

// The shop of the repository root must come up as containers with
// --backend docker, each from the FROM scratch image, answer a checkout
// through all five, and leave nothing in the engine after down.
func TestDockerShopFromRootServesCheckoutAndDownLeavesNothing(t *testing.T) {
	d := requireEngine(t)
	shopOnFreePorts(t)
	p := newDockerProject(t, repoRoot(t), projectName("shop"), d)
	p.must("up", "-d", "--backend", "docker")

	st := p.ps()
	if b := st["build"]; b.Backend != "process" || b.State != runner.StateCompleted {
		t.Errorf("build: %s %s, want a completed process", b.Backend, b.State)
	}
	for _, name := range shopServices {
		s := st[name]
		if s.Backend != "docker" || s.State != runner.StateRunning || s.Health != runner.HealthHealthy {
			t.Errorf("%s: backend %q, %s/%s; want docker, running/healthy (%s)", name, s.Backend, s.State, s.Health, s.Error)
		}
	}
	img, err := d.Client().ImageInspect(t.Context(), "devstack-shop:dev")
	if err != nil {
		t.Fatalf("inspecting the shop image: %v", err)
	}
	if n := len(img.RootFS.Layers); n != 1 || !slices.Equal(img.Config.Entrypoint, []string{"/bin/shop"}) {
		t.Errorf("image devstack-shop:dev has %d layers and entrypoint %v; want FROM scratch + one COPY of /bin/shop", n, img.Config.Entrypoint)
	}

	code, body := shopCheckout(t)
	if code != http.StatusOK {
		t.Fatalf("checkout: %d\n%s\nlogs:\n%s", code, body, p.run("logs").stdout)
	}
	if missing := wentThrough(body, shopServices...); len(missing) > 0 {
		t.Errorf("the checkout did not go through %v:\n%s", missing, body)
	}
	// Between containers too, every hop went through the proxy: the same
	// one trace, parent links and inferred links as with processes.
	checkShopTrace(t, p.cli)

	p.must("down")
	if left := p.leftovers(t.Context()); len(left) > 0 {
		t.Errorf("down left %v", left)
	}
}

// mixedStack is a slice of the shop split across both backends, so that
// calls cross in both directions:
//
//	test ─► orders (container) ─┬─► inventory (process)
//	                            └─► payments (process) ─► fraud (container)
//
// Everyone calls the others at localhost:<published port>, as in the shop;
// devstack rewrites that for the containers. withOthers false keeps only
// build and fraud.
func mixedStack(t *testing.T, withOthers bool) (yaml string, ports map[string]int) {
	shop := filepath.Join(repoRoot(t), "examples", "shop")
	ports = map[string]int{}
	for _, s := range []string{"orders", "inventory", "payments", "fraud"} {
		ports[s] = freeLoopbackPort(t)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `x-devstack:
  workdir: %[1]s
x-healthcheck: &healthcheck
  test: ["CMD", "bin/shop", "probe"]
  interval: 1s
  timeout: 3s
  start_period: 10s
  start_interval: 100ms
x-image: &image
  image: devstack-shop:dev
  build: {context: %[1]s}
services:
  build:
    x-devstack: {run: CGO_ENABLED=0 go build -o bin/shop ./cmd/shop, backend: process}
  fraud:
    <<: *image
    x-devstack: {backend: docker, port_env: PORT}
    command: [serve, fraud]
    ports: ["127.0.0.1:%[2]d:%[2]d"]
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}}
`, shop, ports["fraud"])
	if withOthers {
		fmt.Fprintf(&b, `  payments:
    x-devstack: {run: [bin/shop, serve, payments], port_env: PORT, backend: process}
    ports: ["127.0.0.1:%[1]d:%[1]d"]
    environment: {FRAUD_URL: "http://localhost:%[2]d"}
    healthcheck: *healthcheck
    depends_on: {fraud: {condition: service_healthy}}
  inventory:
    x-devstack: {run: [bin/shop, serve, inventory], port_env: PORT, backend: process}
    ports: ["127.0.0.1:%[3]d:%[3]d"]
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}}
  orders:
    <<: *image
    x-devstack: {backend: docker, port_env: PORT}
    command: [serve, orders]
    ports: ["127.0.0.1:%[4]d:%[4]d"]
    environment: {INVENTORY_URL: "http://localhost:%[3]d", PAYMENTS_URL: "http://localhost:%[1]d"}
    healthcheck: *healthcheck
    depends_on: {inventory: {condition: service_healthy}, payments: {condition: service_healthy}}
`, ports["payments"], ports["fraud"], ports["inventory"], ports["orders"])
	}
	return b.String(), ports
}

// freeLoopbackPort is a port that was free on 127.0.0.1 a moment ago, and
// that no earlier call in this test binary returned: the kernel may hand
// a just-closed port out again, and a stack given one port twice fails.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("no free loopback port that was not handed out already")
	return 0
}

// handedOut is every port freeLoopbackPort returned.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// In a mixed stack, a container must reach a host process and a host
// process a container, both at the localhost addresses the file gives.
func TestDockerMixedStackProcessesAndContainersCallEachOther(t *testing.T) {
	d := requireEngine(t)
	yaml, ports := mixedStack(t, true)
	p := newDockerProject(t, writeProject(t, yaml), projectName("mixed"), d)
	p.must("up", "-d")

	st := p.ps()
	for name, want := range map[string]string{"orders": "docker", "fraud": "docker", "payments": "process", "inventory": "process"} {
		s := st[name]
		if s.Backend != want || s.State != runner.StateRunning || s.Health != runner.HealthHealthy {
			t.Errorf("%s: backend %q, %s/%s; want %s, running/healthy (%s)", name, s.Backend, s.State, s.Health, want, s.Error)
		}
	}
	code, body := get(t, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/orders?item=sku-1&qty=2", ports["orders"]))
	if code != http.StatusCreated {
		t.Fatalf("POST /orders: %d\n%s\nlogs:\n%s", code, body, p.run("logs").stdout)
	}
	if missing := wentThrough(body, "orders", "inventory", "payments", "fraud"); len(missing) > 0 {
		t.Errorf("the order did not go through %v:\n%s", missing, body)
	}
	p.must("down")
	if left := p.leftovers(t.Context()); len(left) > 0 {
		t.Errorf("down left %v", left)
	}
}

// Containers outlive a SIGKILLed supervisor; the next down must still
// remove every container and network of the project.
func TestDockerSIGKILLedSupervisorThenDownLeavesNoContainers(t *testing.T) {
	d := requireEngine(t)
	yaml, _ := mixedStack(t, false)
	p := newDockerProject(t, writeProject(t, yaml), projectName("sigkill"), d)
	p.must("up", "-d")

	sup := supervisorPID(t, p.cli)
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, sup)
	if left := p.leftovers(t.Context()); len(left) == 0 {
		t.Fatal("test setup: expected the container to outlive the supervisor")
	}
	r := p.must("down")
	if left := p.leftovers(t.Context()); len(left) > 0 {
		t.Errorf("down after a SIGKILLed supervisor left %v", left)
	}
	// What it removed, it says: not that the stack was merely not running.
	if !strings.Contains(r.stderr, "container(s) left by a devstack that was killed") {
		t.Errorf("down that removed the killed stack's containers said:\n%s", r.stderr)
	}
}

// A second up with a changed file applies it, as a second `docker compose
// up` does: the changed container is recreated, the unchanged one kept,
// the processes restarted. After a SIGKILLed supervisor, up takes the
// running containers over unchanged.
func TestDockerUpAppliesChangedFileAndKeepsUnchangedContainers(t *testing.T) {
	d := requireEngine(t)
	yaml, ports := mixedStack(t, true)
	dir := writeProject(t, yaml)
	p := newDockerProject(t, dir, projectName("reup"), d)
	p.must("up", "-d")
	order := func(when string) {
		t.Helper()
		code, body := get(t, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/orders?item=sku-1&qty=1", ports["orders"]))
		if code != http.StatusCreated {
			t.Fatalf("%s: POST /orders: %d\n%s", when, code, body)
		}
	}
	order("after the first up")
	before := p.ps()

	changed := strings.Replace(yaml, "command: [serve, fraud]", "command: [serve, fraud]\n    environment: {EXTRA: \"2\"}", 1)
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := p.must("ps"); !strings.Contains(r.stderr, "the file changed since") || !strings.Contains(r.stderr, "changed: fraud") {
		t.Errorf("ps did not say that the file changed:\n%s", r.stderr)
	}
	r := p.must("up", "-d")
	if !strings.Contains(r.stderr, "changed: fraud") {
		t.Errorf("up did not say that fraud changed:\n%s", r.stderr)
	}
	after := p.ps()
	if after["fraud"].ID == before["fraud"].ID {
		t.Errorf("fraud changed but kept its container %s", before["fraud"].ID)
	}
	if after["orders"].ID != before["orders"].ID {
		t.Errorf("orders did not change but its container was recreated: %s, then %s", before["orders"].ID, after["orders"].ID)
	}
	for name, s := range after {
		if name != "build" && (s.State != runner.StateRunning || s.Health != runner.HealthHealthy) {
			t.Errorf("after the second up, %s is %s/%s (%s)", name, s.State, s.Health, s.Error)
		}
	}
	res, err := d.Client().ContainerInspect(t.Context(), p.name+"-fraud-1", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.Container.Config.Env, "EXTRA=2") {
		t.Errorf("fraud's new container lacks EXTRA=2: %v", res.Container.Config.Env)
	}
	order("after the second up")

	// A SIGKILLed supervisor leaves the containers; the next up takes
	// them over as they are.
	sup := supervisorPID(t, p.cli)
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, sup)
	p.must("up", "-d")
	again := p.ps()
	for _, name := range []string{"fraud", "orders"} {
		if again[name].ID != after[name].ID {
			t.Errorf("after a SIGKILLed supervisor, up recreated %s: %s, then %s", name, after[name].ID, again[name].ID)
		}
	}
	order("after taking over from a SIGKILLed supervisor")
	p.must("down")
	if left := p.leftovers(t.Context()); len(left) > 0 {
		t.Errorf("down left %v", left)
	}
}

// With no engine at DOCKER_HOST, up --backend docker must fail at once,
// naming the address tried and the services that need it, and say that
// they could run as processes; nothing may start.
func TestDockerEngineAbsentFailsFastNamingSocketAndServices(t *testing.T) {
	const sock = "unix:///nonexistent.sock"
	t.Setenv("DOCKER_HOST", sock)
	p := newDockerProject(t, repoRoot(t), projectName("absent"), nil)
	start := time.Now()
	r := p.run("up", "-d", "--backend", "docker")
	took := time.Since(start)
	t.Logf("up failed after %s", took)
	if r.code == 0 {
		t.Fatalf("up succeeded without an engine:\n%s", r.stdout)
	}
	if took > 5*time.Second {
		t.Errorf("up took %s to fail; want well under 10s", took)
	}
	for _, want := range append([]string{sock, "could run as processes"}, shopServices...) {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error does not name %q:\n%s", want, r.stderr)
		}
	}
	if r := p.run("ps", "--format", "json"); r.code == 0 && strings.Contains(r.stdout, `"state"`) {
		t.Errorf("something runs after the failed up:\n%s", r.stdout)
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
)

// procShop is the shop as processes, on free ports, with the services
// calling each other at localhost:<port> as in examples/shop. paymentsX
// is added to payments' x-devstack block.
func procShop(t *testing.T, paymentsX string) (yaml string, ports map[string]int) {
	shop := filepath.Join(repoRoot(t), "examples", "shop")
	ports = map[string]int{}
	for _, s := range shopServices {
		ports[s] = freeLoopbackPort(t)
	}
	yaml = fmt.Sprintf(`x-devstack:
  workdir: %[1]s
x-healthcheck: &healthcheck
  test: ["CMD", "bin/shop", "probe"]
  interval: 1s
  timeout: 3s
  start_period: 10s
  start_interval: 100ms
services:
  build:
    x-devstack: {run: CGO_ENABLED=0 go build -o bin/shop ./cmd/shop}
  gateway:
    x-devstack: {run: [bin/shop, serve, gateway], port_env: PORT}
    ports: ["127.0.0.1:%[2]d:%[2]d"]
    environment: {ORDERS_URL: "http://localhost:%[3]d"}
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}, orders: {condition: service_healthy}}
  orders:
    x-devstack: {run: [bin/shop, serve, orders], port_env: PORT}
    ports: ["127.0.0.1:%[3]d:%[3]d"]
    environment: {INVENTORY_URL: "http://localhost:%[4]d", PAYMENTS_URL: "http://localhost:%[5]d"}
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}, inventory: {condition: service_healthy}, payments: {condition: service_healthy}}
  inventory:
    x-devstack: {run: [bin/shop, serve, inventory], port_env: PORT}
    ports: ["127.0.0.1:%[4]d:%[4]d"]
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}}
  payments:
    x-devstack: {run: [bin/shop, serve, payments], port_env: PORT%[7]s}
    ports: ["127.0.0.1:%[5]d:%[5]d"]
    environment: {FRAUD_URL: "http://localhost:%[6]d"}
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}, fraud: {condition: service_healthy}}
  fraud:
    x-devstack: {run: [bin/shop, serve, fraud], port_env: PORT}
    ports: ["127.0.0.1:%[6]d:%[6]d"]
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}}
`, shop, ports["gateway"], ports["orders"], ports["inventory"], ports["payments"], ports["fraud"], paymentsX)
	return yaml, ports
}

// selfRun is a service the test runs itself, in devstack's place.
type selfRun struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startSelf starts cmd in a process group of its own, and kills the group
// when the test ends.
func startSelf(t *testing.T, cmd *exec.Cmd) *selfRun {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	r := &selfRun{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(r.done) }()
	t.Cleanup(r.stop)
	return r
}

// stop kills the run's process group and waits for its leader. Once the
// leader is reaped its id may be another's: it is not signalled again.
func (r *selfRun) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
}

// waitAnswers waits until addr accepts connections.
func waitAnswers(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing answers on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port: there is nothing to wait on
	}
}

// checkout runs a checkout through the gateway and checks that it went
// through every service of the shop.
func checkout(t *testing.T, c *cli, ports map[string]int) {
	t.Helper()
	code, body := get(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/checkout?item=sku-1&qty=2", ports["gateway"]))
	if code != http.StatusOK {
		t.Fatalf("checkout: %d\n%s\nlogs:\n%s", code, body, c.run("logs").stdout)
	}
	if missing := wentThrough(body, shopServices...); len(missing) > 0 {
		t.Errorf("the checkout did not go through %v:\n%s", missing, body)
	}
}

func psByName(t *testing.T, c *cli) map[string]runner.ServiceStatus {
	t.Helper()
	by := map[string]runner.ServiceStatus{}
	for _, s := range c.ps() {
		by[s.Name] = s
	}
	return by
}

// up --except leaves one service to the user: ps says so and how to
// start it, a call to it while nobody runs it is held, then answered 502
// saying why; started from what `devstack env` prints, it takes its place
// in the middle of the chain, traced like the others.
func TestExceptServiceRunByTheUserIsTracedInTheChain(t *testing.T) {
	yaml, ports := procShop(t, "")
	c := newCLI(t, writeProject(t, yaml))
	c.must("up", "-d", "--except", "payments")

	st := psByName(t, c)
	if s := st["payments"]; s.State != runner.StateExternal || s.Health != runner.HealthDown || s.ID != "" {
		t.Errorf("payments: %s/%s (id %q); want external/down, no instance", s.State, s.Health, s.ID)
	}
	for _, name := range []string{"gateway", "orders", "inventory", "fraud"} {
		if s := st[name]; s.State != runner.StateRunning {
			t.Errorf("%s: %s (%s); want running", name, s.State, s.Error)
		}
	}
	if ps := c.must("ps").stdout; !strings.Contains(ps, "payments is external and not running") || !strings.Contains(ps, "devstack env payments") {
		t.Errorf("ps does not say how to start payments:\n%s", ps)
	}

	// Nobody runs it: held for the external hold, then 502 saying why.
	start := time.Now()
	code, body := get(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", ports["payments"]))
	if took := time.Since(start); took < 10*time.Second {
		t.Errorf("answered after %s; want it held for 10s first", took)
	}
	if code != http.StatusBadGateway || !strings.Contains(body, "payments is external and not running") || !strings.Contains(body, "devstack env payments") {
		t.Errorf("a call to payments while nobody runs it: %d %q; want 502 saying it is external and how to start it", code, body)
	}

	// The printed command line, as a shell runs it.
	sh := c.must("env", "payments").stdout
	var hr runner.HostRun
	if err := json.Unmarshal([]byte(c.must("env", "payments", "--format", "json").stdout), &hr); err != nil {
		t.Fatal(err)
	}
	if len(hr.Listen) != 1 || !strings.HasPrefix(hr.Listen[0], "127.0.0.1:") || hr.Declared[0] != uint16(ports["payments"]) {
		t.Fatalf("env --format json: listen %v declared %v; want one private port on 127.0.0.1 for %d", hr.Listen, hr.Declared, ports["payments"])
	}
	_, private, _ := strings.Cut(hr.Listen[0], ":")
	for _, want := range []string{"PORT='" + private + "'", fmt.Sprintf("FRAUD_URL='http://localhost:%d'", ports["fraud"]),
		fmt.Sprintf("DEVSTACK_URL_FRAUD='http://127.0.0.1:%d'", ports["fraud"]), "serve' 'payments'"} {
		if !strings.Contains(sh, want) {
			t.Errorf("env payments lacks %s:\n%s", want, sh)
		}
	}
	if strings.Contains(sh, "DEVSTACK_INSTANCE") {
		t.Errorf("env payments sets DEVSTACK_INSTANCE, which would make devstack's orphan cleanup kill the user's run:\n%s", sh)
	}
	startSelf(t, exec.Command("/bin/sh", "-c", sh))
	waitAnswers(t, hr.Listen[0])
	if s := psByName(t, c)["payments"]; s.State != runner.StateExternal || s.Health != runner.HealthUp {
		t.Errorf("payments, run by the test: %s/%s; want external/up", s.State, s.Health)
	}

	checkout(t, c, ports)
	hops := hopsOf(t, c, "/checkout")
	for _, h := range []string{">gateway", "gateway>orders", "orders>payments", "payments>fraud"} {
		if sp := hops[h]; sp == nil || sp.Status >= 400 || sp.Error != "" {
			t.Errorf("hop %s: %+v; want it recorded and successful (hops: %v)", h, sp, keys(hops))
		}
	}
	if pay, fr := hops["orders>payments"], hops["payments>fraud"]; pay != nil && fr != nil && fr.ParentID != pay.SpanID {
		t.Errorf("payments → fraud has parent %s, want the orders → payments hop %s", fr.ParentID, pay.SpanID)
	}
}

// A service devstack runs can be switched to one the user runs and back
// with stop and start, the rest of the stack running on untouched. The
// shop's orders drops trace context: run by the user, its calls are still
// linked into the trace, devstack finding its process by the private port
// it listens on, as it finds its own services' by their pids.
func TestStopRunYourselfThenStartTakesItBack(t *testing.T) {
	yaml, ports := procShop(t, "")
	c := newCLI(t, writeProject(t, yaml))
	c.must("up", "-d")
	before := psByName(t, c)
	c.must("stop", "orders")

	var hr runner.HostRun
	if err := json.Unmarshal([]byte(c.must("env", "orders", "--format", "json").stdout), &hr); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hr.Argv[0], hr.Argv[1:]...)
	cmd.Dir, cmd.Env = hr.Dir, append(os.Environ(), hr.Env...)
	self := startSelf(t, cmd)
	waitAnswers(t, hr.Listen[0])
	checkout(t, c, ports)
	if ps := c.must("ps").stdout; !strings.Contains(ps, "orders is stopped, but something answers on its port") {
		t.Errorf("ps does not say that orders runs outside devstack:\n%s", ps)
	}
	hops := hopsOf(t, c, "/checkout")
	for _, h := range []string{"gateway>orders", "orders>inventory", "orders>payments", "payments>fraud"} {
		if sp := hops[h]; sp == nil || sp.Status >= 400 {
			t.Errorf("hop %s: %+v; want it in the checkout's trace (hops: %v)", h, sp, keys(hops))
		}
	}
	if inv, ord := hops["orders>inventory"], hops["gateway>orders"]; inv != nil && ord != nil && (!inv.Inferred || inv.ParentID != ord.SpanID) {
		t.Errorf("orders → inventory: parent %s inferred %v; want the gateway → orders hop %s, inferred", inv.ParentID, inv.Inferred, ord.SpanID)
	}

	// devstack cannot take it back while the user's run holds its port.
	if r := c.run("start", "orders"); r.code == 0 || !strings.Contains(r.stderr, "runs outside devstack") {
		t.Errorf("start orders while the test runs it: exit %d, %s; want a refusal saying it runs outside devstack", r.code, r.stderr)
	}
	self.stop()
	c.must("start", "orders")
	after := psByName(t, c)
	if s := after["orders"]; s.State != runner.StateRunning || s.ID == "" || s.ID == before["orders"].ID || s.ID == fmt.Sprint(self.cmd.Process.Pid) {
		t.Errorf("orders after start: %s, id %q; want running again in a new process of devstack's", s.State, s.ID)
	}
	for _, name := range []string{"gateway", "payments", "inventory", "fraud"} {
		if after[name].ID != before[name].ID {
			t.Errorf("%s was restarted (%s, then %s); the switch must leave the rest alone", name, before[name].ID, after[name].ID)
		}
	}
	checkout(t, c, ports)
}

// A service that only the user ever runs needs no command or image in the
// file: the proxy owns its port and forwards to where the user listens.
func TestExternalOnlyServiceNeedsNoCommand(t *testing.T) {
	port := freeLoopbackPort(t)
	yaml := fmt.Sprintf(`services:
  api:
    x-devstack: {external: true, port_env: PORT}
    ports: ["127.0.0.1:%d:8080"]
  web:
    x-devstack: {run: sleep 1000}
    depends_on: [api]
`, port)
	c := newCLI(t, writeProject(t, yaml))
	c.must("up", "-d")
	if s := psByName(t, c)["api"]; s.State != runner.StateExternal || s.Backend != "process" {
		t.Errorf("api: %s on %s; want external, on the host", s.State, s.Backend)
	}
	var hr runner.HostRun
	if err := json.Unmarshal([]byte(c.must("env", "api", "--format", "json").stdout), &hr); err != nil {
		t.Fatal(err)
	}
	sh := c.must("env", "api").stdout
	_, private, _ := strings.Cut(hr.Listen[0], ":")
	if !strings.Contains(sh, "has no x-devstack.run") || !strings.Contains(sh, "export PORT='"+private+"'") {
		t.Errorf("env api does not say to start it your way with its port:\n%s", sh)
	}
	l, err := net.Listen("tcp", hr.Listen[0])
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "mine") })}
	go srv.Serve(l)
	defer srv.Close()
	if code, body := get(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/hello", port)); code != http.StatusOK || body != "mine" {
		t.Errorf("through api's declared port: %d %q; want the test's own server", code, body)
	}
	// The test is both the caller and api's process here: the caller is
	// named after the process that holds api's port.
	if hops := hopsOf(t, c, "/hello"); hops["api>api"] == nil || hops["api>api"].Status != http.StatusOK {
		t.Errorf("the call to api was not traced as api's own: %v", keys(hops))
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/trace"
)

// namedStack is a slice of the shop across both backends in which every
// service calls the others by name and target port, the Compose way,
// never at localhost:
//
//	test ─► orders (container) ─┬─► inventory (process)   http://inventory:8081
//	                            └─► payments (process)    http://payments:8083
//	                                  └─► fraud (container)  http://fraud:8084
//
// A container calls processes by name, and a process a container. ports
// are the published (declared) ports, by service.
func namedStack(t *testing.T) (yaml string, ports map[string]int) {
	shop := filepath.Join(repoRoot(t), "examples", "shop")
	ports = map[string]int{}
	for _, s := range []string{"orders", "inventory", "payments", "fraud"} {
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
    ports: ["127.0.0.1:%[2]d:8084"]
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}}
  payments:
    x-devstack: {run: [bin/shop, serve, payments], port_env: PORT, backend: process}
    ports: ["127.0.0.1:%[3]d:8083"]
    environment: {FRAUD_URL: "http://fraud:8084"}
    healthcheck: *healthcheck
    depends_on: {fraud: {condition: service_healthy}}
  inventory:
    x-devstack: {run: [bin/shop, serve, inventory], port_env: PORT, backend: process}
    ports: ["127.0.0.1:%[4]d:8081"]
    healthcheck: *healthcheck
    depends_on: {build: {condition: service_completed_successfully}}
  orders:
    <<: *image
    x-devstack: {backend: docker, port_env: PORT}
    command: [serve, orders]
    ports: ["127.0.0.1:%[5]d:8082"]
    environment: {INVENTORY_URL: "http://inventory:8081", PAYMENTS_URL: "http://payments:8083"}
    healthcheck: *healthcheck
    depends_on: {inventory: {condition: service_healthy}, payments: {condition: service_healthy}}
`, shop, ports["fraud"], ports["payments"], ports["inventory"], ports["orders"])
	return yaml, ports
}

// hopsOf returns the spans of the only trace recorded of route, by
// "caller>callee".
func hopsOf(t *testing.T, c *cli, route string) map[string]*trace.Span {
	t.Helper()
	var list []trace.Summary
	if err := json.Unmarshal([]byte(c.must("traces", "--format", "json", "--route", route).stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("want exactly one trace of %s for one request, got %d: %+v", route, len(list), list)
	}
	var spans []*trace.Span
	if err := json.Unmarshal([]byte(c.must("trace", list[0].TraceID.String(), "--format", "json").stdout), &spans); err != nil {
		t.Fatal(err)
	}
	by := map[string]*trace.Span{}
	for _, sp := range spans {
		by[sp.Caller+">"+sp.Callee] = sp
	}
	return by
}

// A process calls a container by name, and a container calls processes by
// name, with no change to the file: each call is a hop through the proxy,
// recorded with its caller.
func TestDockerMixedStackCallsByNameBothWaysAreTraced(t *testing.T) {
	d := requireEngine(t)
	yaml, ports := namedStack(t)
	p := newDockerProject(t, writeProject(t, yaml), projectName("named"), d)
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
	hops := hopsOf(t, p.cli, "/orders")
	for _, h := range []string{">orders", "orders>inventory", "orders>payments", "payments>fraud"} {
		sp := hops[h]
		if sp == nil {
			t.Errorf("no hop %s in %v", h, keys(hops))
			continue
		}
		if sp.Status >= 400 || sp.Error != "" {
			t.Errorf("hop %s: status %d, error %q", h, sp.Status, sp.Error)
		}
	}
	// Discovery: each service has the address of what it depends on, as
	// its own backend reaches it.
	res, err := d.Client().ContainerInspect(t.Context(), p.name+"-orders-1", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("DEVSTACK_URL_INVENTORY=http://host.docker.internal:%d", ports["inventory"]),
		fmt.Sprintf("DEVSTACK_URL_PAYMENTS=http://host.docker.internal:%d", ports["payments"]),
	} {
		if !slices.Contains(res.Container.Config.Env, want) {
			t.Errorf("orders (a container) lacks %s: %v", want, res.Container.Config.Env)
		}
	}
	pid, err := strconv.Atoi(st["payments"].ID)
	if err != nil {
		t.Fatalf("payments' id %q is not a pid", st["payments"].ID)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	penv := strings.Split(string(environ), "\x00")
	for _, want := range []string{
		fmt.Sprintf("DEVSTACK_URL_FRAUD=http://127.0.0.1:%d", ports["fraud"]),
		fmt.Sprintf("FRAUD_URL=http://127.0.0.1:%d", ports["fraud"]),
	} {
		if !slices.Contains(penv, want) {
			t.Errorf("payments (a process) lacks %s: %v", want, penv)
		}
	}
	if code, _ := get(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/score", ports["fraud"])); code >= 500 {
		t.Errorf("fraud at the address payments was given answered %d", code)
	}
	if !strings.Contains(p.must("logs", "inventory").stdout, "ambassador") {
		t.Errorf("inventory's log does not mention the ambassador that answers to its name")
	}
}

// A service the user runs is called by name from a container too: devstack
// makes it answer to its name on the project network, and the call goes
// through the proxy to where the user runs it.
func TestDockerExternalServiceIsCalledByNameFromAContainer(t *testing.T) {
	d := requireEngine(t)
	yaml, ports := namedStack(t)
	p := newDockerProject(t, writeProject(t, yaml), projectName("external"), d)
	p.must("up", "-d", "--except", "payments")
	if s := p.ps()["payments"]; s.State != runner.StateExternal {
		t.Fatalf("payments: %s; want external", s.State)
	}
	var hr runner.HostRun
	if err := json.Unmarshal([]byte(p.must("env", "payments", "--format", "json").stdout), &hr); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hr.Argv[0], hr.Argv[1:]...)
	cmd.Dir, cmd.Env = hr.Dir, append(os.Environ(), hr.Env...)
	startSelf(t, cmd)
	waitAnswers(t, hr.Listen[0])

	code, body := get(t, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/orders?item=sku-1&qty=2", ports["orders"]))
	if code != http.StatusCreated {
		t.Fatalf("POST /orders: %d\n%s\nlogs:\n%s", code, body, p.run("logs").stdout)
	}
	if missing := wentThrough(body, "orders", "inventory", "payments", "fraud"); len(missing) > 0 {
		t.Errorf("the order did not go through %v:\n%s", missing, body)
	}
	hops := hopsOf(t, p.cli, "/orders")
	for _, h := range []string{"orders>payments", "payments>fraud"} {
		if sp := hops[h]; sp == nil || sp.Status >= 400 || sp.Error != "" {
			t.Errorf("hop %s: %+v; want it recorded and successful (hops: %v)", h, sp, keys(hops))
		}
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/control"
)

func (c *cli) plugins() []control.PluginStatus {
	c.t.Helper()
	var st []control.PluginStatus
	r := c.must("plugins", "--format", "json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		c.t.Fatalf("plugins --format json: %v\n%s", err, r.stdout)
	}
	return st
}

func (c *cli) faults() control.FaultList {
	c.t.Helper()
	var l control.FaultList
	r := c.must("fault", "ls", "--format", "json")
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		c.t.Fatalf("fault ls --format json: %v\n%s", err, r.stdout)
	}
	return l
}

func faultIDs(l control.FaultList) string {
	var s []string
	for _, r := range l.Rules {
		s = append(s, r.ID+":"+r.Service+":"+r.String())
	}
	return strings.Join(s, ", ")
}

// The fault commands drive the built-in fault plugin of a running stack;
// a plugin killed outright comes back with its rules.
func TestFaultCommandsAndPluginRestart(t *testing.T) {
	t.Parallel() // no ports; a project name of its own
	dir := writeProject(t, `
name: faultcli
x-devstack:
  faults:
    rules:
      - {service: web, latency: 200ms, route: /slow*}
services:
  web:
    x-devstack: {run: [sleep, "600"]}
  api:
    x-devstack: {run: [sleep, "600"]}
`)
	c := newCLI(t, dir)
	c.must("up", "-d")

	st := c.plugins()
	if len(st) != 1 || st[0].Name != "faultinject" || st[0].State != "running" || st[0].Version == "" || !st[0].Builtin || st[0].Pid == 0 {
		t.Fatalf("plugins: %+v", st)
	}
	if got := faultIDs(c.faults()); got != "f1:web:latency 200ms route=/slow*" {
		t.Fatalf("the file's faults: %s", got)
	}
	out := c.must("fault", "add", "api", "--abort", "503", "--probability", "0.2", "--caller", "web", "--for", "5m").stdout
	if !strings.HasPrefix(out, "f2\tapi: abort 503 caller=web p=0.2 (expires in 5m") {
		t.Errorf("add printed %q", out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"fault", "add", "wbe", "--latency", "1s"}, `no service "wbe" in this stack; its services are api, web`},
		{[]string{"fault", "add", "web"}, "no fault given"},
		{[]string{"fault", "add", "web", "--latency", "1s", "--reset"}, "latency and reset in one fault"},
		{[]string{"fault", "add", "web", "--latency", "soon"}, `latency "soon": want a duration`},
		{[]string{"fault", "add", "web", "--bandwidth", "fast"}, `bandwidth "fast"`},
		{[]string{"fault", "rm", "f9"}, "no fault f9; `devstack fault ls` lists them"},
	} {
		r := c.run(tt.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("devstack %s: exit %d, stderr %q; want %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
	}
	c.must("fault", "add", "web", "--hang", "--method", "POST")
	c.must("fault", "add", "web", "--hang-for", "5s")
	if got := faultIDs(c.faults()); got != "f1:web:latency 200ms route=/slow*, f2:api:abort 503 caller=web p=0.2, f3:web:hang method=POST, f4:web:hang 5s" {
		t.Fatalf("faults: %s", got)
	}
	table := c.must("fault", "ls").stdout
	if !strings.Contains(table, "ID  SERVICE  FAULT") || !strings.Contains(table, "f2  api      abort 503 caller=web p=0.2") {
		t.Errorf("fault ls:\n%s", table)
	}

	// Killed outright, the plugin is restarted and still knows its faults.
	pid := st[0].Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st = c.plugins()
		if st[0].Restarts == 1 && st[0].State == "running" && st[0].Pid != pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin did not come back: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := faultIDs(c.faults()); !strings.HasPrefix(got, "f1:web") || !strings.Contains(got, "f4:web:hang 5s") {
		t.Errorf("after the restart: %s", got)
	}
	if out := c.must("plugins").stdout; !strings.Contains(out, "faultinject") || !strings.Contains(out, "built-in") {
		t.Errorf("plugins:\n%s", out)
	}

	c.must("fault", "rm", "f1", "f3")
	scenario := filepath.Join(dir, "chaos.yaml")
	if err := os.WriteFile(scenario, []byte("header_trigger: true\nrules:\n  - {service: api, latency: 2s}\n  - {service: web, abort: 503, probability: 0.1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = c.must("fault", "apply", scenario).stdout
	if !strings.Contains(out, "2 fault(s) in force") {
		t.Errorf("apply printed %q", out)
	}
	l := c.faults()
	if got := faultIDs(l); got != "f5:api:latency 2s, f6:web:abort 503 p=0.1" || !l.HeaderTrigger {
		t.Errorf("after apply: %s (header trigger %v)", got, l.HeaderTrigger)
	}
	if err := os.WriteFile(scenario, []byte("rules:\n  - {service: api, latncy: 2s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.run("fault", "apply", scenario); r.code == 0 || !strings.Contains(r.stderr, `chaos.yaml: rules[0]: unknown field "latncy"`) {
		t.Errorf("bad scenario: %q", r.stderr)
	}
	if out := c.must("fault", "clear").stdout; !strings.Contains(out, "removed 2 fault(s)") {
		t.Errorf("clear printed %q", out)
	}
	if got := c.must("fault", "ls").stdout; !strings.HasPrefix(got, "no faults") {
		t.Errorf("after clear: %q", got)
	}

	pid = c.plugins()[0].Pid
	c.must("down")
	if alive(pid) {
		t.Errorf("the plugin (pid %d) outlived down", pid)
	}
	if r := c.run("fault", "ls"); r.code == 0 || !strings.Contains(r.stderr, "faultcli is not running") {
		t.Errorf("fault ls on a stopped stack: %q", r.stderr)
	}
}

// A bad x-devstack.faults fails up before anything starts, naming the
// file and the rule.
func TestBadFaultScenarioFailsUp(t *testing.T) {
	t.Parallel()
	dir := writeProject(t, `
name: faultbad
x-devstack:
  faults:
    rules:
      - {service: web, latency: 1s, abort: 503}
services:
  web:
    x-devstack: {run: [sleep, "600"]}
`)
	c := newCLI(t, dir)
	r := c.run("up", "-d")
	if r.code == 0 || !strings.Contains(r.stderr, `devstack.yaml: x-devstack.faults: rules[0]: fault for service "web": latency and abort in one fault`) {
		t.Errorf("up: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A taken Toxiproxy API port fails up at once, naming the key.
func TestToxiproxyPortTakenFailsUp(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	dir := writeProject(t, fmt.Sprintf("name: toxitaken\nx-devstack:\n  toxiproxy: %d\nservices:\n  web:\n    x-devstack: {run: [sleep, \"600\"]}\n", port))
	c := newCLI(t, dir)
	r := c.run("up", "-d")
	if r.code == 0 || !strings.Contains(r.stderr, fmt.Sprintf("x-devstack.toxiproxy: port %d on 127.0.0.1 is taken", port)) {
		t.Errorf("up: exit %d, stderr %q", r.code, r.stderr)
	}
}

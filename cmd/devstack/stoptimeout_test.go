package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
)

// stubbornStack's services ignore SIGTERM (the shell's trap, which its
// sleeps inherit) and have 30s to stop: only the SIGKILL after the grace
// ends them. Healthy means the trap is set.
const stubbornStack = `
services:
  web:
    x-devstack: {run: "trap '' TERM; touch web.ready; while :; do sleep 0.1; done"}
    stop_grace_period: 30s
    healthcheck: {test: ["CMD", "test", "-f", "web.ready"], interval: 1h, start_period: 1m, start_interval: 50ms}
  worker:
    x-devstack: {run: "trap '' TERM; touch worker.ready; while :; do sleep 0.1; done"}
    stop_grace_period: 30s
    healthcheck: {test: ["CMD", "test", "-f", "worker.ready"], interval: 1h, start_period: 1m, start_interval: 50ms}
`

// quickly bounds a command whose stops were cut to a second or less: well
// under the services' 30s, with room for a loaded machine.
const quickly = 10 * time.Second

// cutGrace is what a stop with -t 0 says of each service, in the command's
// output and the service's log.
const cutGrace = "stopping: sent SIGTERM, SIGKILL after 0s (this stop's timeout; its stop_grace_period is 30s)"

// As with docker compose, stop, restart, down and up -d (applying an
// edited file) must take -t SECONDS and give every service they stop that
// grace instead of its stop_grace_period, and say so.
func TestStopTimeoutCutsTheGracePeriod(t *testing.T) {
	dir := writeProject(t, stubbornStack)
	c := newCLI(t, dir)
	c.must("up", "-d")
	pids := c.pids()

	start := time.Now()
	r := c.must("stop", "-t", "0", "web")
	if el := time.Since(start); el > quickly {
		t.Fatalf("stop -t 0 took %s; web's stop_grace_period is 30s", el)
	}
	if !strings.Contains(r.stderr, "web: "+cutGrace) {
		t.Errorf("stop -t 0 does not say the grace it gave; want %q in:\n%s", "web: "+cutGrace, r.stderr)
	}
	if alive(pids["web"]) {
		t.Errorf("web (pid %d) is alive after stop -t 0", pids["web"])
	}
	if logs := c.must("logs", "web").stdout; !strings.Contains(logs, cutGrace) {
		t.Errorf("web's log does not say the grace it got:\n%s", logs)
	}

	// restart -t 1: a second of grace, then worker runs again.
	start = time.Now()
	c.must("restart", "-t", "1", "worker")
	if el := time.Since(start); el < time.Second || el > quickly {
		t.Errorf("restart -t 1 took %s; want a second and a little (stop_grace_period is 30s)", el)
	}
	if now := c.pids(); now["worker"] == 0 || now["worker"] == pids["worker"] || alive(pids["worker"]) || now["web"] != 0 {
		t.Errorf("restart -t 1: running %v, before %v; want worker a new process, the old one gone, and web still stopped", now, pids)
	}

	// up -d -t 0 on an edited file: the running supervisor stops its
	// processes with that grace before the new one starts them.
	c.must("start", "web")
	pids = c.pids()
	edited := strings.Replace(stubbornStack, "    stop_grace_period: 30s\n", "    stop_grace_period: 30s\n    environment: {EDITED: \"1\"}\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	r = c.must("up", "-d", "-t", "0")
	if el := time.Since(start); el > quickly+5*time.Second { // the new supervisor starts the stack too
		t.Errorf("up -d -t 0 on an edited file took %s; the services' stop_grace_period is 30s", el)
	}
	if !strings.Contains(r.stderr, "worker: "+cutGrace) {
		t.Errorf("up -d -t 0 does not say the grace it gave; want %q in:\n%s", "worker: "+cutGrace, r.stderr)
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) is alive after up -d applied the edit", name, pid)
		}
	}

	pids = c.pids()
	start = time.Now()
	r = c.must("down", "-t", "0")
	if el := time.Since(start); el > quickly {
		t.Fatalf("down -t 0 took %s; the services' stop_grace_period is 30s", el)
	}
	for _, name := range []string{"web", "worker"} {
		if !strings.Contains(r.stderr, name+": "+cutGrace) {
			t.Errorf("down -t 0 does not say the grace it gave %s:\n%s", name, r.stderr)
		}
		if alive(pids[name]) {
			t.Errorf("%s (pid %d) is alive after down -t 0", name, pids[name])
		}
	}
}

// up -t SECONDS must be the grace of the stack's stop at Ctrl-C.
func TestForegroundUpTimeoutCutsTheGracePeriodAtCtrlC(t *testing.T) {
	c := newCLI(t, writeProject(t, stubbornStack))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := c.command(ctx, "up", "-t", "0")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &out, "is up (2 services)")
	start := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("up -t 0 exited with %v after Ctrl-C:\n%s", err, out.String())
	}
	if el := time.Since(start); el > quickly {
		t.Errorf("up -t 0 took %s to stop at Ctrl-C; the services' stop_grace_period is 30s", el)
	}
	said := map[string]bool{} // the prefix is padded: "web    | "
	for _, line := range strings.Split(out.String(), "\n") {
		if name, msg, ok := strings.Cut(line, "| "); ok && msg == cutGrace {
			said[strings.TrimSpace(name)] = true
		}
	}
	if !said["web"] || !said["worker"] {
		t.Errorf("up -t 0 does not say the grace it gave each service at Ctrl-C; want \"web | %s\" and worker's in:\n%s", cutGrace, out.String())
	}
}

// pids are the running services' pids, by name.
func (c *cli) pids() map[string]int {
	c.t.Helper()
	out := map[string]int{}
	for _, s := range c.ps() {
		if s.State == runner.StateRunning {
			out[s.Name], _ = strconv.Atoi(s.ID)
		}
	}
	return out
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
)

// A healthcheck that probes the port the proxy fronts (not the private
// one) is devstack's own traffic: its hops are recorded with the caller
// healthcheck:<service>, and traces leaves them out unless asked with
// --probes. A real request beside them is listed as always.
func TestHealthcheckProbesOfAPublishedPortStayOutOfTraces(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "shop")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/shop/cmd/shop")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the shop: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := writeProject(t, fmt.Sprintf(`name: probes
services:
  fraud:
    x-devstack: {run: [%[1]q, serve, fraud], port_env: PORT}
    ports: ["127.0.0.1:%[2]d:%[2]d"]
    healthcheck:
      test: [CMD, %[1]q, probe, "http://127.0.0.1:%[2]d/healthz"]
      interval: 100ms
      start_period: 10s
      start_interval: 100ms
`, bin, port))
	c := newCLI(t, dir)
	c.must("up", "-d")
	summaries := func(args ...string) []trace.Summary {
		r := c.must(append([]string{"traces", "--format", "json"}, args...)...)
		var s []trace.Summary
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
			t.Fatalf("traces: %v\n%s", err, r.stdout)
		}
		return s
	}
	// The probes run every 100ms: wait until a few were recorded.
	var probes []trace.Summary
	for deadline := time.Now().Add(30 * time.Second); len(probes) < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, traces --probes lists %d traces; want the healthcheck's probes", len(probes))
		}
		probes = summaries("--probes")
	}
	for _, s := range probes {
		if s.Route != "/healthz" || s.Root != "fraud" {
			t.Errorf("probe trace %+v; want fraud /healthz", s)
		}
	}
	r := c.must("trace", probes[0].TraceID.String(), "--format", "json")
	if !strings.Contains(r.stdout, `"caller": "healthcheck:fraud"`) && !strings.Contains(r.stdout, `"caller":"healthcheck:fraud"`) {
		t.Errorf("a probe's hop does not name the healthcheck as its caller:\n%s", r.stdout)
	}
	if got := summaries(); len(got) != 0 {
		t.Errorf("traces without --probes lists %d traces (%+v); want none: only probes ran", len(got), got[0])
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/score?order=1", port))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var got []trace.Summary
	for deadline := time.Now().Add(10 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
		got = summaries()
	}
	if len(got) != 1 || got[0].Route != "/score" {
		t.Errorf("traces after one request lists %+v; want that request alone", got)
	}
	c.must("down")
}

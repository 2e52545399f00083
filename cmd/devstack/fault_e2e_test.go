package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/devstack/devstack/trace"
)

// faultCheckout sends one checkout through the shop's gateway with a
// trace id of its own, and returns the status, how long it took, and the
// trace's spans by "caller>callee".
func faultCheckout(t *testing.T, c *cli, project string, hdr map[string]string) (int, time.Duration, map[string]*trace.Span) {
	t.Helper()
	var id [16]byte
	rand.Read(id[:])
	tid := hex.EncodeToString(id[:])
	req, err := http.NewRequestWithContext(t.Context(), "GET", shopURL(t, "/checkout?item=sku-1&qty=1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+tid+"-00f067aa0ba902b7-01")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	// The spans are recorded as each hop ends; the gateway's is last.
	// Read through the control API rather than the CLI: one process start
	// less per checkout (the CLI's trace command is tested elsewhere).
	api, err := dialState(t.Context(), filepath.Join(c.state, project))
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := trace.ParseTraceID(tid)
	by := map[string]*trace.Span{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans, err := api.Trace(t.Context(), tr)
		if err == nil {
			clear(by)
			for _, sp := range spans {
				by[sp.Caller+">"+sp.Callee] = sp
			}
			if by[">gateway"] != nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s never got its gateway hop (%v)", tid, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return resp.StatusCode, took, by
}

func faultsOf(by map[string]*trace.Span) map[string][]string {
	out := map[string][]string{}
	for k, sp := range by {
		if len(sp.Faults) > 0 {
			out[k] = sp.Faults
		}
	}
	return out
}

// checkShopFaults injects faults into the running shop through the CLI
// and checks the responses and the recorded spans.
func checkShopFaults(t *testing.T, c *cli, project string) {
	// Nothing injected: nothing recorded.
	code, _, by := faultCheckout(t, c, project, nil)
	if code != 200 || len(faultsOf(by)) != 0 {
		t.Fatalf("without faults: %d %v", code, faultsOf(by))
	}

	// Latency on one hop, matched by route and caller.
	c.must("fault", "add", "payments", "--latency", "300ms", "--route", "/charge*", "--caller", "orders")
	code, took, by := faultCheckout(t, c, project, nil)
	pay := by["orders>payments"]
	if code != 200 || took < 300*time.Millisecond || pay == nil || !slices.Equal(pay.Faults, []string{"latency 300ms"}) || pay.Duration < 300*time.Millisecond {
		t.Fatalf("latency: %d after %v, payments hop %+v", code, took, pay)
	}
	if f := faultsOf(by); len(f) != 1 {
		t.Errorf("faults beyond the payments hop: %v", f)
	}
	if fr := by["payments>fraud"]; fr == nil || fr.Duration > 250*time.Millisecond {
		t.Errorf("fraud's hop took the injected latency: %+v", fr)
	}
	wf := c.must("trace", pay.TraceID.String(), "--no-color").stdout
	if !strings.Contains(wf, "+300 ms injected") {
		t.Errorf("the waterfall does not show the injected latency:\n%s", wf)
	}
	c.must("fault", "clear")

	// A caller that does not match: no fault.
	c.must("fault", "add", "payments", "--latency", "300ms", "--caller", "gateway")
	if _, _, by = faultCheckout(t, c, project, nil); len(faultsOf(by)) != 0 {
		t.Errorf("a fault for another caller applied: %v", faultsOf(by))
	}
	c.must("fault", "clear")

	// An abort on the first request only: the caller sees the 503, the
	// next checkout goes through.
	c.must("fault", "add", "inventory", "--abort", "503", "--first", "1")
	code, _, by = faultCheckout(t, c, project, nil)
	inv := by["orders>inventory"]
	if code != http.StatusBadGateway || inv == nil || inv.Status != 503 || !slices.Equal(inv.Faults, []string{"abort 503"}) {
		t.Fatalf("abort: %d, inventory hop %+v", code, inv)
	}
	if code, _, by = faultCheckout(t, c, project, nil); code != 200 || len(faultsOf(by)) != 0 {
		t.Fatalf("after the first request: %d %v", code, faultsOf(by))
	}
	c.must("fault", "clear")

	// A reset: the caller's request fails at the transport.
	c.must("fault", "add", "fraud", "--reset")
	code, _, by = faultCheckout(t, c, project, nil)
	if fr := by["payments>fraud"]; code == 200 || fr == nil || !slices.Equal(fr.Faults, []string{"reset"}) || fr.Error == "" {
		t.Fatalf("reset: %d, fraud hop %+v", code, fr)
	}
	c.must("fault", "clear")

	// A reset after a while: the hop lasts that long, then fails.
	c.must("fault", "add", "fraud", "--reset-after", "200ms")
	code, _, by = faultCheckout(t, c, project, nil)
	if fr := by["payments>fraud"]; code == 200 || fr == nil || !slices.Equal(fr.Faults, []string{"reset after 200ms"}) || fr.Error == "" || fr.Duration < 200*time.Millisecond {
		t.Fatalf("reset after: %d, fraud hop %+v", code, fr)
	}
	c.must("fault", "clear")

	// A header matcher: only requests carrying it.
	c.must("fault", "add", "gateway", "--abort", "418", "--header", "X-Tenant=acme")
	if code, _, by = faultCheckout(t, c, project, map[string]string{"X-Tenant": "acme"}); code != 418 || !slices.Equal(by[">gateway"].Faults, []string{"abort 418"}) {
		t.Errorf("header matcher: %d %v", code, faultsOf(by))
	}
	if code, _, by = faultCheckout(t, c, project, map[string]string{"X-Tenant": "other"}); code != 200 || len(faultsOf(by)) != 0 {
		t.Errorf("header matcher, other value: %d %v", code, faultsOf(by))
	}
	c.must("fault", "clear")

	// On the response: fraud did its work, payments gets a 502 instead.
	c.must("fault", "add", "fraud", "--abort", "502", "--direction", "response")
	code, _, by = faultCheckout(t, c, project, nil)
	if fr := by["payments>fraud"]; code != http.StatusBadGateway || fr == nil || fr.Status != 502 || !slices.Equal(fr.Faults, []string{"abort 502 on response"}) {
		t.Errorf("abort on response: %d, fraud hop %+v", code, fr)
	}
	c.must("fault", "clear")

	// A hang for a set time, then a reset: the caller's call fails.
	c.must("fault", "add", "inventory", "--hang-for", "300ms")
	code, took, by = faultCheckout(t, c, project, nil)
	if inv := by["orders>inventory"]; code == 200 || took < 300*time.Millisecond || inv == nil || !slices.Equal(inv.Faults, []string{"hang 300ms"}) {
		t.Errorf("hang: %d after %v, inventory hop %+v", code, took, inv)
	}
	c.must("fault", "clear")

	// A slow body: the whole answer, a chunk at a time.
	c.must("fault", "add", "gateway", "--slow-body", "40ms", "--chunk", "64")
	code, took, by = faultCheckout(t, c, project, nil)
	if gw := by[">gateway"]; code != 200 || took < 120*time.Millisecond || !slices.Equal(gw.Faults, []string{"slow-body"}) || gw.BytesOut < 192 {
		t.Errorf("slow body: %d after %v, gateway hop %+v", code, took, gw)
	}
	c.must("fault", "clear")

	// Header-triggered faults: ignored until a scenario enables them.
	hdr := map[string]string{"X-Devstack-Fault": "latency=250ms"}
	if _, took, by = faultCheckout(t, c, project, hdr); len(faultsOf(by)) != 0 || took > 240*time.Millisecond {
		t.Errorf("the header was obeyed while off: %v after %v", faultsOf(by), took)
	}
	scenario := filepath.Join(t.TempDir(), "incident.yaml")
	if err := os.WriteFile(scenario, []byte("header_trigger: true\nrules:\n  - {service: payments, latency: 200ms, method: POST}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("fault", "apply", scenario)
	_, took, by = faultCheckout(t, c, project, hdr)
	want := map[string][]string{">gateway": {"latency 250ms"}, "orders>payments": {"latency 200ms"}}
	if got := faultsOf(by); len(got) != 2 || !slices.Equal(got[">gateway"], want[">gateway"]) || !slices.Equal(got["orders>payments"], want["orders>payments"]) || took < 450*time.Millisecond {
		t.Fatalf("scenario with header trigger: %v after %v; want %v", got, took, want)
	}

	// The plugin killed outright: the proxy keeps applying the rules while
	// it restarts, and the plugin comes back with them.
	pid := c.plugins()[0].Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, _, by = faultCheckout(t, c, project, nil); !slices.Equal(by["orders>payments"].Faults, []string{"latency 200ms"}) {
		t.Errorf("while the plugin restarts: %v", faultsOf(by))
	}
	deadline := time.Now().Add(30 * time.Second)
	for st := c.plugins(); st[0].Restarts != 1 || st[0].State != "running"; st = c.plugins() {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin did not come back: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := c.faults(); len(l.Rules) != 1 || l.Rules[0].String() != "latency 200ms method=POST" || !l.HeaderTrigger {
		t.Errorf("after the restart: %s (header trigger %v)", faultIDs(l), l.HeaderTrigger)
	}
	// clear removes the rules; the header trigger is the scenario's
	// setting, and a scenario without it turns it off.
	c.must("fault", "clear")
	if _, _, by = faultCheckout(t, c, project, hdr); !slices.Equal(faultsOf(by)[">gateway"], []string{"latency 250ms"}) || len(faultsOf(by)) != 1 {
		t.Errorf("after clear: %v", faultsOf(by))
	}
	if err := os.WriteFile(scenario, []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("fault", "apply", scenario)
	if _, _, by = faultCheckout(t, c, project, hdr); len(faultsOf(by)) != 0 {
		t.Errorf("header trigger off again: %v", faultsOf(by))
	}
}

// Faults through the real proxy, the shop as processes.
func TestShopFaults(t *testing.T) {
	shopOnFreePorts(t)
	c := newCLI(t, repoRoot(t))
	c.must("up", "-d")
	checkShopFaults(t, c, "shop")
}

// Faults through the real proxy, the shop as containers.
func TestDockerShopFaults(t *testing.T) {
	d := requireEngine(t)
	shopOnFreePorts(t)
	p := newDockerProject(t, repoRoot(t), projectName("shopfaults"), d)
	p.must("up", "-d", "--backend", "docker")
	checkShopFaults(t, p.cli, p.name)
}

// Toxiproxy's own Go client drives a running stack's Toxiproxy API, and
// its toxics act on real traffic through the proxy.
func TestToxiproxyClientDrivesTheStack(t *testing.T) {
	t.Parallel() // free ports of its own; runs after the tests on the shop's fixed ports
	shop := filepath.Join(repoRoot(t), "examples", "shop")
	port, api := freeLoopbackPort(t), freeLoopbackPort(t)
	dir := writeProject(t, fmt.Sprintf(`
name: toxi
x-devstack:
  workdir: %s
  toxiproxy: %d
services:
  build:
    x-devstack: {run: CGO_ENABLED=0 go build -o bin/shop ./cmd/shop}
  fraud:
    x-devstack: {run: [bin/shop, serve, fraud], port_env: PORT}
    ports: ["127.0.0.1:%d:%d"]
    depends_on: {build: {condition: service_completed_successfully}}
`, shop, api, port, port))
	c := newCLI(t, dir)
	c.must("up", "-d")
	url := fmt.Sprintf("http://127.0.0.1:%d/score?amount=100", port)
	score := func() (int, time.Duration, error) {
		start := time.Now()
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Get(url)
		if err != nil {
			return 0, time.Since(start), err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(start), nil
	}

	tp := toxiproxy.NewClient(fmt.Sprintf("127.0.0.1:%d", api))
	proxies, err := tp.Proxies()
	if err != nil {
		t.Fatal(err)
	}
	fraud := proxies["fraud"]
	if fraud == nil || fraud.Listen != fmt.Sprintf("127.0.0.1:%d", port) || !fraud.Enabled {
		t.Fatalf("proxies: %+v", proxies)
	}
	if _, err := fraud.AddToxic("", "latency", "downstream", 1, toxiproxy.Attributes{"latency": 250}); err != nil {
		t.Fatal(err)
	}
	if code, took, err := score(); err != nil || code != 200 || took < 250*time.Millisecond {
		t.Fatalf("with a latency toxic: %d after %v (%v)", code, took, err)
	}
	if got := faultIDs(c.faults()); got != "toxiproxy:fraud/latency_downstream:fraud:latency 250ms on response" {
		t.Errorf("fault ls: %s", got)
	}
	if err := fraud.Disable(); err != nil {
		t.Fatal(err)
	}
	// The API answers once the proxy has the change: the very next request
	// sees it.
	if code, _, err := score(); err == nil {
		t.Fatalf("a disabled proxy answered %d", code)
	}
	if err := tp.ResetState(); err != nil {
		t.Fatal(err)
	}
	// After a reset the call goes through untouched: its hop carries no
	// fault (counted below: one hop, the first call's, has the latency).
	if code, _, err := score(); err != nil || code != 200 {
		t.Fatalf("after a reset: %d (%v)", code, err)
	}
	var list []trace.Summary
	if err := json.Unmarshal([]byte(c.must("traces", "--service", "fraud", "--format", "json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	injected := 0
	for _, s := range list {
		var spans []*trace.Span
		if err := json.Unmarshal([]byte(c.must("trace", s.TraceID.String(), "--format", "json").stdout), &spans); err != nil {
			t.Fatal(err)
		}
		for _, sp := range spans {
			if slices.Equal(sp.Faults, []string{"latency 250ms on response"}) {
				injected++
			}
		}
	}
	if injected != 1 {
		t.Errorf("%d hops carry the toxic's latency, want 1 (of %d traces)", injected, len(list))
	}
}

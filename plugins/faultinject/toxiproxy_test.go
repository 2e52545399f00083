package faultinject

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy/fault"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func ruleStrings(rs []fault.Rule) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.ID+"="+r.Service+":"+r.String())
	}
	return strings.Join(s, "; ")
}

// Toxiproxy's own Go client drives the plugin's Toxiproxy API; each call
// shows up as the fault rules devstack's proxy applies.
func TestToxiproxyClient(t *testing.T) {
	port := freePort(t)
	opts, _ := json.Marshal(Options{Toxiproxy: port})
	p, h := New(), &fakeHost{}
	cfg := sdk.Config{Options: opts, Services: []sdk.Service{
		{Name: "payments", Ports: []sdk.Port{{Listen: "127.0.0.1:18083", Upstream: "127.0.0.1:40001"}}},
		{Name: "redis", Ports: []sdk.Port{{Listen: "127.0.0.1:16379", Upstream: "127.0.0.1:40002", Protocol: "tcp"}}},
		{Name: "build"},
	}}
	if err := p.Start(t.Context(), cfg, h); err != nil {
		t.Fatal(err)
	}
	c := toxiproxy.NewClient("127.0.0.1:" + strconv.Itoa(port))

	proxies, err := c.Proxies()
	if err != nil {
		t.Fatal(err)
	}
	if len(proxies) != 2 || proxies["payments"].Listen != "127.0.0.1:18083" || proxies["payments"].Upstream != "127.0.0.1:40001" || !proxies["redis"].Enabled {
		t.Fatalf("proxies %+v", proxies)
	}
	// A suite's own name for a service, by its upstream port.
	cache, err := c.CreateProxy("cache", "localhost:26379", "localhost:16379")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateProxy("mysql", "localhost:23306", "localhost:3306"); err == nil || !strings.Contains(err.Error(), "devstack cannot open new proxies") {
		t.Errorf("unknown proxy: %v", err)
	}

	pay, err := c.Proxy("payments")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name, typ, stream string
		toxicity          float32
		attrs             toxiproxy.Attributes
		want              string
	}{
		{"", "latency", "downstream", 1, toxiproxy.Attributes{"latency": 100, "jitter": 10}, "toxiproxy:payments/latency_downstream=payments:latency 100ms±10ms on response"},
		{"slow", "latency", "upstream", 0.5, toxiproxy.Attributes{"latency": 20}, "toxiproxy:payments/slow=payments:latency 20ms p=0.5"},
		{"bw", "bandwidth", "downstream", 1, toxiproxy.Attributes{"rate": 64}, "toxiproxy:payments/bw=payments:bandwidth 64000B/s"},
		{"sc", "slow_close", "downstream", 1, toxiproxy.Attributes{"delay": 1500}, "toxiproxy:payments/sc=payments:slow-close 1.5s"},
		{"to", "timeout", "downstream", 1, toxiproxy.Attributes{"timeout": 2000}, "toxiproxy:payments/to=payments:timeout 2s"},
		{"rp", "reset_peer", "downstream", 1, toxiproxy.Attributes{"timeout": 0}, "toxiproxy:payments/rp=payments:reset"},
		{"rpl", "reset_peer", "downstream", 1, toxiproxy.Attributes{"timeout": 300}, "toxiproxy:payments/rpl=payments:reset after 300ms"},
		{"ld", "limit_data", "downstream", 1, toxiproxy.Attributes{"bytes": 512}, "toxiproxy:payments/ld=payments:limit-data 512B"},
	}
	var want []string
	for _, s := range steps {
		tx, err := pay.AddToxic(s.name, s.typ, s.stream, s.toxicity, s.attrs)
		if err != nil {
			t.Fatalf("%s: %v", s.typ, err)
		}
		if tx.Type != s.typ || tx.Stream != s.stream {
			t.Errorf("toxic %+v", tx)
		}
		want = append(want, s.want)
		if got := ruleStrings(h.last().Rules); got != strings.Join(want, "; ") {
			t.Fatalf("after %s:\n got  %s\n want %s", s.typ, got, strings.Join(want, "; "))
		}
	}
	if _, err := pay.AddToxic("bw", "bandwidth", "downstream", 1, toxiproxy.Attributes{"rate": 1}); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("duplicate toxic: %v", err)
	}
	if _, err := pay.AddToxic("x", "nonsense", "downstream", 1, nil); err == nil || !strings.Contains(err.Error(), "not one devstack maps") {
		t.Errorf("unknown type: %v", err)
	}
	toxics, err := pay.Toxics()
	if err != nil || len(toxics) != len(steps) {
		t.Fatalf("toxics %+v %v", toxics, err)
	}
	for _, tx := range toxics {
		if tx.Name == "latency_downstream" && (tx.Attributes["latency"] != float64(100) || tx.Attributes["jitter"] != float64(10) || tx.Toxicity != 1) {
			t.Errorf("listed %+v", tx)
		}
	}
	if _, err := pay.UpdateToxic("latency_downstream", 1, toxiproxy.Attributes{"latency": 300}); err != nil {
		t.Fatal(err)
	}
	if got := ruleStrings(h.last().Rules); !strings.Contains(got, "latency_downstream=payments:latency 300ms±10ms on response") {
		t.Errorf("after update: %s", got)
	}
	if err := pay.RemoveToxic("bw"); err != nil {
		t.Fatal(err)
	}
	if got := ruleStrings(h.last().Rules); strings.Contains(got, "/bw=") {
		t.Errorf("removed toxic still pushed: %s", got)
	}

	// A proxy under a suite's name acts on its service; disabling it is
	// port down.
	if _, err := cache.AddToxic("", "latency", "upstream", 1, toxiproxy.Attributes{"latency": 5}); err != nil {
		t.Fatal(err)
	}
	if err := cache.Disable(); err != nil {
		t.Fatal(err)
	}
	got := ruleStrings(h.last().Rules)
	if !strings.Contains(got, "toxiproxy:cache/latency_upstream=redis:latency 5ms") || !strings.Contains(got, "toxiproxy:cache/disabled=redis:port-down") {
		t.Errorf("cache: %s", got)
	}
	if px, err := c.Proxy("cache"); err != nil || px.Enabled || px.Upstream != "127.0.0.1:40002" {
		t.Errorf("cache proxy %+v %v", px, err)
	}

	// Rules added by hand sit beside the toxics; reset removes only the
	// toxics, as Toxiproxy would.
	if _, err := p.Command(t.Context(), "add", []byte(`{"service":"payments","abort":503}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetState(); err != nil {
		t.Fatal(err)
	}
	if got := ruleStrings(h.last().Rules); got != "f1=payments:abort 503" {
		t.Errorf("after reset: %s", got)
	}
	if px, _ := c.Proxy("cache"); !px.Enabled {
		t.Error("reset left the proxy disabled")
	}
	if _, err := c.Populate([]toxiproxy.Proxy{{Name: "payments", Upstream: "127.0.0.1:18083", Enabled: false}}); err != nil {
		t.Fatal(err)
	}
	if got := ruleStrings(h.last().Rules); !strings.Contains(got, "toxiproxy:payments/disabled=payments:port-down") {
		t.Errorf("after populate: %s", got)
	}
	// A toxicity of 0 is listed but never applied.
	if _, err := pay.AddToxic("never", "latency", "downstream", 0, toxiproxy.Attributes{"latency": 5}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ruleStrings(h.last().Rules), "never") {
		t.Error("a toxic with toxicity 0 is applied")
	}
	if tx, err := pay.Toxics(); err != nil || len(tx) != 1 || tx[0].Name != "never" {
		t.Errorf("toxics %+v %v", tx, err)
	}
}

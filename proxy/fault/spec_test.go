package fault

import (
	"strings"
	"testing"
	"time"
)

func TestScenario(t *testing.T) {
	src := `
header_trigger: true
rules:
  - service: payments
    latency: 2s
    jitter: 100ms
    distribution: normal
    route: /charge*
    caller: orders
    header: X-Tenant~^ac
    for: 5m
  - {service: payments, abort: 503, body: down, probability: 0.1, method: post}
  - {service: inventory, grpc_abort: 14}
  - {service: db, reset: true}
  - {service: db, hang: true}
  - {service: db, hang: 3s, direction: response}
  - {service: gateway, bandwidth: 10KB}
  - {service: gateway, bandwidth: 2048}
  - {service: gateway, slow_body: 100ms, chunk: 16}
  - {service: db, timeout: 5s}
  - {service: db, port_down: true, first: 2}
  - {service: db, slow_close: 1s}
  - {service: db, limit_data: 1KiB}
  - {service: db, reset_after: 250ms}
`
	sc, err := ParseScenario("chaos.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rules, err := sc.RulesAt(now)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.HeaderTrigger || len(rules) != 14 {
		t.Fatalf("trigger %v, %d rules", sc.HeaderTrigger, len(rules))
	}
	r := rules[0]
	if r.Fault != (Fault{Kind: Latency, Duration: 2 * time.Second, Jitter: 100 * time.Millisecond, Dist: Normal}) ||
		r.Route != "/charge*" || r.Caller != "orders" || *r.Header != (HeaderMatch{Name: "X-Tenant", Regex: "^ac"}) || !r.Expires.Equal(now.Add(5*time.Minute)) {
		t.Errorf("rule 0: %+v", r)
	}
	want := []string{
		"latency 2s±100ms normal caller=orders route=/charge* header X-Tenant~/^ac/",
		"abort 503 method=POST p=0.1",
		"grpc-abort 14",
		"reset",
		"hang",
		"hang 3s on response",
		"bandwidth 10000B/s",
		"bandwidth 2048B/s",
		"slow-body 16B/100ms",
		"timeout 5s",
		"port-down first 2",
		"slow-close 1s",
		"limit-data 1024B",
		"reset after 250ms",
	}
	for i, w := range want {
		if got := rules[i].String(); got != w {
			t.Errorf("rule %d: %q, want %q", i, got, w)
		}
	}
	if rules[1].Fault.Body != "down" {
		t.Errorf("body %q", rules[1].Fault.Body)
	}
}

func TestScenarioErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"rules:\n  - {service: a, latncy: 2s}", `chaos.yaml: rules[0]: unknown field "latncy"`},
		{"rules:\n  - {service: a}", "rules[0]: fault for service \"a\": no fault given"},
		{"rules:\n  - {latency: 1s}", "needs its target service"},
		{"rules:\n  - {service: a, latency: 1s, abort: 503}", "latency and abort in one fault"},
		{"rules:\n  - {service: a, latency: soon}", `latency "soon": want a duration`},
		{"rules:\n  - {service: a, abort: 503, jitter: 1s}", "jitter and distribution go with latency"},
		{"rules:\n  - {service: a, bandwidth: fast}", "want bytes per second"},
		{"rules:\n  - {service: a, hang: maybe}", "want true or a duration"},
		{"rules:\n  - {service: a, reset: true, for: ever}", `for "ever"`},
		{"rulez: []", `unknown field "rulez"`},
		{"- service: a", "a scenario is a mapping"},
		{"rules: [", "chaos.yaml: yaml"},
	} {
		_, err := ParseScenario("chaos.yaml", []byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.src, err, tt.want)
		}
	}
	if sc, err := ParseScenario("empty.yaml", nil); err != nil || len(sc.Rules) != 0 {
		t.Errorf("empty: %+v %v", sc, err)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "10KB": 10000, "10kb": 10000, "64KiB": 65536, "1.5MB": 1500000, "1MB/s": 1e6, "2 K": 2000} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, in := range []string{"", "fast", "-1", "10XB", "0"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

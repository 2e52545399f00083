package faultinject

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy/fault"
)

type fakeHost struct {
	mu     sync.Mutex
	pushes []sdk.RuleSet
}

func (h *fakeHost) PushRules(rs sdk.RuleSet) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pushes = append(h.pushes, rs)
	return nil
}

func (h *fakeHost) Act(sdk.Action) error { return nil }

func (h *fakeHost) last() sdk.RuleSet {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pushes[len(h.pushes)-1]
}

func ids(rs []fault.Rule) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.ID+":"+r.Service)
	}
	return strings.Join(s, ",")
}

func start(t *testing.T, cfg sdk.Config) (*Plugin, *fakeHost) {
	t.Helper()
	p, h := New(), &fakeHost{}
	cfg.Services = []sdk.Service{{Name: "gateway"}, {Name: "orders"}, {Name: "payments"}}
	if err := p.Start(t.Context(), cfg, h); err != nil {
		t.Fatal(err)
	}
	return p, h
}

func cmd(t *testing.T, p *Plugin, name string, args any) []byte {
	t.Helper()
	b, _ := json.Marshal(args)
	out, err := p.Command(context.Background(), name, b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

func TestCommands(t *testing.T) {
	opts, _ := json.Marshal(Options{Faults: fault.Scenario{HeaderTrigger: true, Rules: []fault.Spec{{Service: "payments", Latency: "2s"}}}})
	p, h := start(t, sdk.Config{Options: opts})
	if got := ids(h.last().Rules); got != "f1:payments" || !h.last().HeaderTrigger {
		t.Fatalf("scenario pushed %s trigger %v", got, h.last().HeaderTrigger)
	}
	var added fault.Rule
	_ = json.Unmarshal(cmd(t, p, "add", fault.Spec{Service: "orders", Abort: 503, Probability: 0.2}), &added)
	if added.ID != "f2" || added.Fault.Status != 503 || ids(h.last().Rules) != "f1:payments,f2:orders" {
		t.Fatalf("add: %+v, pushed %s", added, ids(h.last().Rules))
	}
	var l List
	_ = json.Unmarshal(cmd(t, p, "ls", nil), &l)
	if ids(l.Rules) != "f1:payments,f2:orders" || !l.HeaderTrigger {
		t.Errorf("ls %+v", l)
	}
	cmd(t, p, "rm", map[string]string{"id": "f1"})
	if ids(h.last().Rules) != "f2:orders" {
		t.Errorf("after rm: %s", ids(h.last().Rules))
	}
	cmd(t, p, "clear", nil)
	if len(h.last().Rules) != 0 {
		t.Errorf("after clear: %s", ids(h.last().Rules))
	}
	_ = json.Unmarshal(cmd(t, p, "apply", fault.Scenario{Rules: []fault.Spec{{Service: "gateway", Reset: true}, {Service: "orders", Hang: &fault.Toggle{On: true}}}}), &l)
	if ids(l.Rules) != "f3:gateway,f4:orders" || l.HeaderTrigger || h.last().HeaderTrigger {
		t.Errorf("apply: %+v", l)
	}
}

func TestCommandErrors(t *testing.T) {
	p, h := start(t, sdk.Config{})
	n := len(h.pushes)
	for _, tt := range []struct {
		name string
		args any
		want string
	}{
		{"add", fault.Spec{Service: "paymnts", Latency: "1s"}, `no service "paymnts" in this stack; its services are gateway, orders, payments`},
		{"add", fault.Spec{Service: "payments", Caller: "ordrs", Latency: "1s"}, `caller "ordrs" is not a service`},
		{"add", fault.Spec{Service: "payments"}, "no fault given"},
		{"rm", map[string]string{"id": "f9"}, "no fault f9; `devstack fault ls` lists them"},
		{"apply", fault.Scenario{Rules: []fault.Spec{{Service: "payments", Reset: true}, {Service: "nope", Reset: true}}}, `rules[1]: no service "nope"`},
		{"explode", nil, `no command "explode"`},
	} {
		b, _ := json.Marshal(tt.args)
		if _, err := p.Command(context.Background(), tt.name, b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %+v: %v, want %q", tt.name, tt.args, err, tt.want)
		}
	}
	if len(h.pushes) != n {
		t.Error("a failed command pushed rules")
	}
	if _, err := p.Command(context.Background(), "ls", nil); err != nil {
		t.Fatal(err)
	}
}

// After a restart the plugin starts from the rules it last pushed, not
// from the scenario, and numbers new rules after them.
func TestRestartResumes(t *testing.T) {
	opts, _ := json.Marshal(Options{Faults: fault.Scenario{Rules: []fault.Spec{{Service: "payments", Latency: "2s"}}}})
	p, h := start(t, sdk.Config{Options: opts, Restarted: true, Rules: sdk.RuleSet{Rules: []fault.Rule{
		{ID: "f7", Service: "orders", Fault: fault.Fault{Kind: fault.Reset}}}}})
	if ids(h.last().Rules) != "f7:orders" {
		t.Fatalf("resumed with %s", ids(h.last().Rules))
	}
	var r fault.Rule
	_ = json.Unmarshal(cmd(t, p, "add", fault.Spec{Service: "gateway", Reset: true}), &r)
	if r.ID != "f8" {
		t.Errorf("new id %s", r.ID)
	}
}

// An expiring rule is dropped and the set pushed again when it expires.
func TestExpiry(t *testing.T) {
	p, h := start(t, sdk.Config{})
	cmd(t, p, "add", fault.Spec{Service: "payments", Reset: true, For: "50ms"})
	cmd(t, p, "add", fault.Spec{Service: "orders", Reset: true})
	deadline := time.Now().Add(10 * time.Second)
	for ids(h.last().Rules) != "f2:orders" {
		if time.Now().After(deadline) {
			t.Fatalf("still pushed: %s", ids(h.last().Rules))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

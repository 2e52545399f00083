package faultinject

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy/fault"
)

// Name is the plugin's name; Version its version.
const (
	Name    = "faultinject"
	Version = "1.0.0"
)

// Options is the plugin's configuration (sdk.Config.Options).
type Options struct {
	// Faults is the project's x-devstack.faults scenario.
	Faults fault.Scenario `json:"faults,omitzero"`
	// Toxiproxy is the loopback port of the Toxiproxy-compatible API; 0
	// off.
	Toxiproxy int `json:"toxiproxy,omitempty"`
}

// Plugin is the fault injection plugin.
type Plugin struct {
	now func() time.Time

	mu       sync.Mutex
	host     sdk.Host
	svcs     []sdk.Service
	services []string
	rules    []fault.Rule
	trigger  bool
	next     int           // the next rule id's number
	changed  chan struct{} // wakes the expiry loop

	// The Toxiproxy API's state besides the rules: names suites gave
	// services, toxics that never apply (toxicity 0, latency 0), and each
	// toxic's stream.
	aliases map[string]string
	inert   map[string]toxic
	streams map[string]string
}

// New returns the plugin.
func New() *Plugin {
	return &Plugin{now: time.Now, changed: make(chan struct{}, 1),
		aliases: map[string]string{}, inert: map[string]toxic{}, streams: map[string]string{}}
}

// Serve runs the plugin as a plugin process.
func Serve() { sdk.Serve(New()) }

var (
	_ sdk.Plugin    = (*Plugin)(nil)
	_ sdk.Commander = (*Plugin)(nil)
)

func (p *Plugin) Info() sdk.Info { return sdk.Info{Name: Name, Version: Version} }

func (p *Plugin) Start(ctx context.Context, cfg sdk.Config, host sdk.Host) error {
	var o Options
	if len(cfg.Options) > 0 {
		if err := json.Unmarshal(cfg.Options, &o); err != nil {
			return fmt.Errorf("reading options: %w", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.host = host
	p.svcs = cfg.Services
	for _, s := range cfg.Services {
		p.services = append(p.services, s.Name)
	}
	if cfg.Restarted {
		p.rules, p.trigger = cfg.Rules.Rules, cfg.Rules.HeaderTrigger
	} else {
		rules, err := o.Faults.RulesAt(p.now())
		if err != nil {
			return fmt.Errorf("x-devstack.faults: %w", err)
		}
		p.trigger = o.Faults.HeaderTrigger
		for _, r := range rules {
			if r, err = p.admit(r); err != nil {
				return fmt.Errorf("x-devstack.faults: %w", err)
			}
			p.rules = append(p.rules, r)
		}
	}
	for _, r := range p.rules {
		if n, err := strconv.Atoi(strings.TrimPrefix(r.ID, "f")); err == nil && n >= p.next {
			p.next = n + 1
		}
	}
	if err := p.pushLocked(); err != nil {
		return err
	}
	if o.Toxiproxy > 0 {
		if err := p.serveToxiproxy(ctx, o.Toxiproxy); err != nil {
			return err
		}
	}
	go p.expire(ctx)
	return nil
}

// admit checks a new rule's service and gives it an id.
func (p *Plugin) admit(r fault.Rule) (fault.Rule, error) {
	if len(p.services) > 0 && !slices.Contains(p.services, r.Service) {
		return r, fmt.Errorf("no service %q in this stack; its services are %s", r.Service, strings.Join(p.services, ", "))
	}
	if r.Caller != "" && r.Caller != "client" && len(p.services) > 0 && !slices.Contains(p.services, r.Caller) {
		return r, fmt.Errorf("caller %q is not a service of this stack (use \"client\" for callers outside it); its services are %s", r.Caller, strings.Join(p.services, ", "))
	}
	if r.ID == "" {
		p.next = max(p.next, 1)
		r.ID = "f" + strconv.Itoa(p.next)
		p.next++
	}
	for _, o := range p.rules {
		if o.ID == r.ID {
			return r, fmt.Errorf("a fault with id %s exists already", r.ID)
		}
	}
	return r, nil
}

// pushLocked sends the rules in force to devstack.
func (p *Plugin) pushLocked() error {
	now := p.now()
	p.rules = slices.DeleteFunc(p.rules, func(r fault.Rule) bool { return !r.Expires.IsZero() && !now.Before(r.Expires) })
	if _, err := fault.Compile(p.rules, fault.Options{}); err != nil {
		return err
	}
	select {
	case p.changed <- struct{}{}:
	default:
	}
	return p.host.PushRules(sdk.RuleSet{Rules: slices.Clone(p.rules), HeaderTrigger: p.trigger})
}

// expire drops rules when they expire. The proxy stops applying a rule at
// its expiry by itself; this keeps `fault ls` and the pushed set tidy.
func (p *Plugin) expire(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		var next time.Time
		for _, r := range p.rules {
			if !r.Expires.IsZero() && (next.IsZero() || r.Expires.Before(next)) {
				next = r.Expires
			}
		}
		p.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(p.now()), 0)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-p.changed:
		case <-t.C:
			p.mu.Lock()
			_ = p.pushLocked()
			p.mu.Unlock()
		}
	}
}

// Command runs fault add, ls, rm, clear and apply.
func (p *Plugin) Command(_ context.Context, name string, args []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch name {
	case "add":
		var s fault.Spec
		if err := json.Unmarshal(args, &s); err != nil {
			return nil, fmt.Errorf("reading the fault: %w", err)
		}
		r, err := s.Rule(p.now())
		if err != nil {
			return nil, err
		}
		if r, err = p.admit(r); err != nil {
			return nil, err
		}
		p.rules = append(p.rules, r)
		if err := p.pushLocked(); err != nil {
			p.rules = p.rules[:len(p.rules)-1]
			return nil, err
		}
		return json.Marshal(r)
	case "ls":
		now := p.now()
		live := slices.DeleteFunc(slices.Clone(p.rules), func(r fault.Rule) bool { return !r.Expires.IsZero() && !now.Before(r.Expires) })
		return json.Marshal(List{Rules: orEmpty(live), HeaderTrigger: p.trigger})
	case "rm":
		var a struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, fmt.Errorf("reading the id: %w", err)
		}
		i := slices.IndexFunc(p.rules, func(r fault.Rule) bool { return r.ID == a.ID })
		if i < 0 {
			return nil, fmt.Errorf("no fault %s; `devstack fault ls` lists them", a.ID)
		}
		r := p.rules[i]
		p.rules = slices.Delete(p.rules, i, i+1)
		if err := p.pushLocked(); err != nil {
			return nil, err
		}
		return json.Marshal(r)
	case "clear":
		n := len(p.rules)
		p.rules = nil
		clear(p.inert)
		if err := p.pushLocked(); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]int{"removed": n})
	case "apply":
		var sc fault.Scenario
		if err := fault.DecodeScenario(args, &sc); err != nil {
			return nil, err
		}
		rules, err := sc.RulesAt(p.now())
		if err != nil {
			return nil, err
		}
		old, oldTrigger := p.rules, p.trigger
		p.rules, p.trigger = nil, sc.HeaderTrigger
		for i, r := range rules {
			if r, err = p.admit(r); err != nil {
				p.rules, p.trigger = old, oldTrigger
				return nil, fmt.Errorf("rules[%d]: %w", i, err)
			}
			p.rules = append(p.rules, r)
		}
		if err := p.pushLocked(); err != nil {
			p.rules, p.trigger = old, oldTrigger
			return nil, err
		}
		return json.Marshal(List{Rules: orEmpty(p.rules), HeaderTrigger: p.trigger})
	}
	return nil, fmt.Errorf("the fault plugin has no command %q (add, ls, rm, clear, apply)", name)
}

// List is what ls and apply answer.
type List struct {
	Rules         []fault.Rule `json:"rules"`
	HeaderTrigger bool         `json:"header_trigger"`
}

func orEmpty(r []fault.Rule) []fault.Rule {
	if r == nil {
		return []fault.Rule{}
	}
	return r
}

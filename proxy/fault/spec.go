package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Spec is a rule as people write it: an entry of a scenario file or of
// x-devstack.faults, or the flags of `devstack fault add`. It names one
// fault kind:
//
//   - service: payments        # the target (required)
//     latency: 2s              # or abort: 503, grpc_abort: 14, reset: true,
//     jitter: 200ms            #    hang: true | 5s, bandwidth: 10KB,
//     distribution: normal     #    slow_body: 100ms (+ chunk), timeout: 5s,
//     caller: orders           #    port_down: true
//     route: /charge*
//     method: POST
//     header: X-Tenant=acme    # Name (present), Name=value, Name~regex
//     direction: response
//     probability: 0.1
//     first: 3
//     for: 5m
type Spec struct {
	ID          string  `json:"id,omitempty"`
	Service     string  `json:"service"`
	Caller      string  `json:"caller,omitempty"`
	Route       string  `json:"route,omitempty"`
	Method      string  `json:"method,omitempty"`
	Header      string  `json:"header,omitempty"`
	Direction   string  `json:"direction,omitempty"`
	Probability float64 `json:"probability,omitempty"`
	First       int     `json:"first,omitempty"`
	// For ends the rule that long after it is applied ("5m").
	For string `json:"for,omitempty"`

	Latency      string  `json:"latency,omitempty"`
	Jitter       string  `json:"jitter,omitempty"`
	Distribution string  `json:"distribution,omitempty"`
	Abort        int     `json:"abort,omitempty"`
	Body         string  `json:"body,omitempty"`
	GRPCAbort    int     `json:"grpc_abort,omitempty"`
	Reset        bool    `json:"reset,omitempty"`
	ResetAfter   string  `json:"reset_after,omitempty"`
	Hang         *Toggle `json:"hang,omitempty"`
	Bandwidth    *Bytes  `json:"bandwidth,omitempty"`
	SlowBody     string  `json:"slow_body,omitempty"`
	Chunk        int     `json:"chunk,omitempty"`
	Timeout      *Toggle `json:"timeout,omitempty"`
	PortDown     bool    `json:"port_down,omitempty"`
	SlowClose    string  `json:"slow_close,omitempty"`
	LimitData    *Bytes  `json:"limit_data,omitempty"`
}

// Toggle is true, or a duration ("5s": true for that long).
type Toggle struct {
	On  bool
	For time.Duration
}

func (t Toggle) MarshalJSON() ([]byte, error) {
	if t.For > 0 {
		return json.Marshal(t.For.String())
	}
	return json.Marshal(t.On)
}

func (t *Toggle) UnmarshalJSON(b []byte) error {
	var on bool
	if err := json.Unmarshal(b, &on); err == nil {
		*t = Toggle{On: on}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want true or a duration like 5s, not %s", b)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("want true or a duration like 5s, not %q", s)
	}
	*t = Toggle{On: true, For: d}
	return nil
}

// Bytes is a byte rate: a number of bytes per second, or a string with a
// unit: "512", "10KB", "1.5MB", "64KiB" (per second).
type Bytes int64

func (b Bytes) MarshalJSON() ([]byte, error) { return json.Marshal(int64(b)) }

func (b *Bytes) UnmarshalJSON(data []byte) error {
	var n int64
	if err := json.Unmarshal(data, &n); err == nil {
		*b = Bytes(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("want bytes per second, like 10KB, not %s", data)
	}
	v, err := ParseBytes(s)
	*b = Bytes(v)
	return err
}

// ParseBytes reads "512", "10KB", "10kb", "1.5MB", "64KiB", "1GB".
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "/s"), "ps")
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	}
	f, err := strconv.ParseFloat(num, 64)
	mult := map[string]float64{"": 1, "B": 1, "K": 1e3, "KB": 1e3, "KIB": 1024, "M": 1e6, "MB": 1e6, "MIB": 1 << 20, "G": 1e9, "GB": 1e9, "GIB": 1 << 30}[unit]
	if err != nil || mult == 0 || f <= 0 {
		return 0, fmt.Errorf("bandwidth %q: want bytes per second, like 512, 10KB or 1MB", s)
	}
	return int64(f * mult), nil
}

// Rule turns the spec into a Rule, its expiry counted from now.
func (s Spec) Rule(now time.Time) (Rule, error) {
	r := Rule{ID: s.ID, Service: s.Service, Caller: s.Caller, Route: s.Route, Method: strings.ToUpper(s.Method),
		Probability: s.Probability, First: s.First}
	where := fmt.Sprintf("fault for service %q", s.Service)
	if s.Service == "" {
		return r, errors.New("a fault needs its target service")
	}
	var err error
	if r.Direction, err = ParseDirection(s.Direction); err != nil {
		return r, fmt.Errorf("%s: %w", where, err)
	}
	if s.For != "" {
		d, err := time.ParseDuration(s.For)
		if err != nil || d <= 0 {
			return r, fmt.Errorf("%s: for %q: want a duration like 5m", where, s.For)
		}
		r.Expires = now.Add(d)
	}
	if h := s.Header; h != "" {
		m := &HeaderMatch{Name: h}
		if name, v, ok := strings.Cut(h, "~"); ok {
			m.Name, m.Regex = name, v
		} else if name, v, ok := strings.Cut(h, "="); ok {
			m.Name, m.Value = name, v
		}
		m.Name = strings.TrimSpace(m.Name)
		r.Header = m
	}
	dur := func(key, v string) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%s: %s %q: want a duration like 200ms", where, key, v)
		}
		return d, nil
	}
	var kinds []string
	f := &r.Fault
	set := func(k Kind, name string) { f.Kind = k; kinds = append(kinds, name) }
	if s.Latency != "" {
		set(Latency, "latency")
		if f.Duration, err = dur("latency", s.Latency); err != nil {
			return r, err
		}
		if s.Jitter != "" {
			if f.Jitter, err = dur("jitter", s.Jitter); err != nil {
				return r, err
			}
		}
		if s.Distribution != "" {
			if f.Dist, err = ParseDist(s.Distribution); err != nil {
				return r, fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	if s.Abort != 0 {
		set(Abort, "abort")
		f.Status, f.Body = s.Abort, s.Body
	}
	if s.GRPCAbort != 0 {
		set(AbortGRPC, "grpc_abort")
		f.Status, f.Body = s.GRPCAbort, s.Body
	}
	if s.Reset || s.ResetAfter != "" {
		set(Reset, "reset")
		if s.ResetAfter != "" {
			if f.Duration, err = dur("reset_after", s.ResetAfter); err != nil {
				return r, err
			}
		}
	}
	if s.Hang != nil && s.Hang.On {
		set(Hang, "hang")
		f.Duration = s.Hang.For
	}
	if s.Bandwidth != nil {
		set(Bandwidth, "bandwidth")
		f.Rate = int64(*s.Bandwidth)
	}
	if s.SlowBody != "" {
		set(SlowBody, "slow_body")
		if f.Duration, err = dur("slow_body", s.SlowBody); err != nil {
			return r, err
		}
		f.Chunk = s.Chunk
	}
	if s.Timeout != nil && s.Timeout.On {
		set(Timeout, "timeout")
		f.Duration = s.Timeout.For
	}
	if s.PortDown {
		set(PortDown, "port_down")
	}
	if s.SlowClose != "" {
		set(SlowClose, "slow_close")
		if f.Duration, err = dur("slow_close", s.SlowClose); err != nil {
			return r, err
		}
	}
	if s.LimitData != nil {
		set(LimitData, "limit_data")
		f.Bytes = int64(*s.LimitData)
	}
	switch {
	case len(kinds) == 0:
		return r, fmt.Errorf("%s: no fault given; say one of latency, abort, grpc_abort, reset, hang, bandwidth, slow_body, timeout, port_down, slow_close, limit_data", where)
	case len(kinds) > 1:
		return r, fmt.Errorf("%s: %s in one fault; give each its own entry", where, strings.Join(kinds, " and "))
	case s.Jitter != "" && f.Kind != Latency, s.Distribution != "" && f.Kind != Latency:
		return r, fmt.Errorf("%s: jitter and distribution go with latency", where)
	case s.Body != "" && f.Kind != Abort && f.Kind != AbortGRPC:
		return r, fmt.Errorf("%s: body goes with abort or grpc_abort", where)
	case s.Chunk != 0 && f.Kind != SlowBody:
		return r, fmt.Errorf("%s: chunk goes with slow_body", where)
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, nil
}

// Scenario is a scenario file, and the shape of x-devstack.faults.
type Scenario struct {
	// HeaderTrigger obeys X-Devstack-Fault request headers (off unless
	// set: anyone who can reach a port could slow the stack down).
	HeaderTrigger bool   `json:"header_trigger,omitempty"`
	Rules         []Spec `json:"rules,omitempty"`
}

// ParseScenario reads a scenario (YAML or JSON) and checks every rule;
// errors name the rule by its position and service. name is the file's
// name for messages.
func ParseScenario(name string, data []byte) (Scenario, error) {
	var sc Scenario
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return sc, fmt.Errorf("%s: %w", name, err)
	}
	if v == nil {
		return sc, nil
	}
	if _, ok := v.(map[string]any); !ok {
		return sc, fmt.Errorf("%s: a scenario is a mapping with header_trigger and rules (a list of faults)", name)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return sc, fmt.Errorf("%s: %w", name, err)
	}
	if err := DecodeScenario(j, &sc); err != nil {
		return sc, fmt.Errorf("%s: %w", name, err)
	}
	return sc, nil
}

// DecodeScenario decodes a scenario from JSON, strictly, and checks it.
func DecodeScenario(j []byte, sc *Scenario) error {
	var raw struct {
		HeaderTrigger bool              `json:"header_trigger"`
		Rules         []json.RawMessage `json:"rules"`
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("%s (a scenario has header_trigger and rules)", strings.TrimPrefix(err.Error(), "json: "))
	}
	sc.HeaderTrigger = raw.HeaderTrigger
	sc.Rules = sc.Rules[:0]
	now := time.Now()
	for i, rj := range raw.Rules {
		var s Spec
		dec := json.NewDecoder(bytes.NewReader(rj))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return fmt.Errorf("rules[%d]: %s", i, strings.TrimPrefix(err.Error(), "json: "))
		}
		if _, err := s.Rule(now); err != nil {
			return fmt.Errorf("rules[%d]: %w", i, err)
		}
		sc.Rules = append(sc.Rules, s)
	}
	return nil
}

// RulesAt turns the scenario's specs into rules applied now.
func (sc Scenario) RulesAt(now time.Time) ([]Rule, error) {
	out := make([]Rule, 0, len(sc.Rules))
	for i, s := range sc.Rules {
		r, err := s.Rule(now)
		if err != nil {
			return nil, fmt.Errorf("rules[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

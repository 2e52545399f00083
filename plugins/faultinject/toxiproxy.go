package faultinject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy/fault"
)

// The Toxiproxy API: test suites written against Toxiproxy's clients
// drive devstack unchanged. Each service of the stack is a proxy (named
// after it, or under the name a suite gives it when it "creates" a proxy
// whose upstream is the service's port); a toxic is a fault rule with the
// id "toxiproxy:PROXY/TOXIC", so `devstack fault ls` shows it too. The
// mapping:
//
//	latency {latency, jitter} ms   → latency ± jitter (uniform), on the
//	                                 response (downstream) or request (upstream)
//	bandwidth {rate} KB/s          → bandwidth rate×1000 B/s
//	slow_close {delay} ms          → slow-close
//	timeout {timeout} ms           → timeout (0: never closes)
//	reset_peer {timeout} ms        → reset, after timeout (per request)
//	limit_data {bytes}             → limit-data
//	proxy enabled: false           → port-down
//
// toxicity becomes the rule's probability, drawn per request rather than
// per connection. Unlike Toxiproxy, devstack cannot open new listeners:
// a proxy must map onto a service.

// toxiproxyVersion is what GET /version answers: the API version spoken.
const toxiproxyVersion = "2.5.0"

const toxicPrefix = "toxiproxy:"

type tpProxy struct {
	Name     string  `json:"name"`
	Listen   string  `json:"listen"`
	Upstream string  `json:"upstream"`
	Enabled  bool    `json:"enabled"`
	Toxics   []toxic `json:"toxics"`
}

type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float64        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

type tpError struct {
	Message string `json:"error"`
	Status  int    `json:"status"`
}

func (e *tpError) Error() string { return e.Message }

func tpErr(status int, format string, args ...any) *tpError {
	return &tpError{Message: fmt.Sprintf(format, args...), Status: status}
}

// serveToxiproxy serves the API on 127.0.0.1:port until ctx ends.
func (p *Plugin) serveToxiproxy(ctx context.Context, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("x-devstack.toxiproxy: listening for the Toxiproxy API: %w", err)
	}
	srv := &http.Server{Handler: p.toxiproxyHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return nil
}

func (p *Plugin) toxiproxyHandler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, fn func(r *http.Request) (int, any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			status, v, err := fn(r)
			var te *tpError
			if errors.As(err, &te) {
				status, v = te.Status, te
			} else if err != nil {
				status, v = http.StatusBadRequest, tpErr(http.StatusBadRequest, "%v", err)
			}
			if v == nil {
				w.WriteHeader(status)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(v)
		})
	}
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain;charset=utf-8")
		_, _ = w.Write([]byte(toxiproxyVersion))
	})
	h("POST /reset", func(*http.Request) (int, any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.rules = slices.DeleteFunc(p.rules, func(r fault.Rule) bool { return strings.HasPrefix(r.ID, toxicPrefix) })
		clear(p.inert)
		return http.StatusNoContent, nil, p.pushLocked()
	})
	h("GET /proxies", func(*http.Request) (int, any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		out := map[string]tpProxy{}
		for _, name := range p.proxyNames() {
			out[name] = p.proxyLocked(name)
		}
		return http.StatusOK, out, nil
	})
	h("POST /proxies", func(r *http.Request) (int, any, error) {
		in := tpProxy{Enabled: true}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			return 0, nil, tpErr(http.StatusBadRequest, "bad request body: %v", err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if err := p.adopt(in); err != nil {
			return 0, nil, err
		}
		if err := p.setEnabledLocked(in.Name, in.Enabled); err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, p.proxyLocked(in.Name), nil
	})
	h("POST /populate", func(r *http.Request) (int, any, error) {
		var in []struct {
			tpProxy
			Enabled *bool `json:"enabled"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			return 0, nil, tpErr(http.StatusBadRequest, "bad request body: %v", err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		out := struct {
			Proxies []tpProxy `json:"proxies"`
		}{Proxies: []tpProxy{}}
		for _, x := range in {
			x.tpProxy.Enabled = x.Enabled == nil || *x.Enabled
			if err := p.adopt(x.tpProxy); err != nil {
				return 0, nil, err
			}
			if err := p.setEnabledLocked(x.Name, x.tpProxy.Enabled); err != nil {
				return 0, nil, err
			}
			out.Proxies = append(out.Proxies, p.proxyLocked(x.Name))
		}
		return http.StatusCreated, out, nil
	})
	h("GET /proxies/{proxy}", func(r *http.Request) (int, any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		name := r.PathValue("proxy")
		if _, err := p.serviceOf(name); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, p.proxyLocked(name), nil
	})
	h("POST /proxies/{proxy}", func(r *http.Request) (int, any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		name := r.PathValue("proxy")
		if _, err := p.serviceOf(name); err != nil {
			return 0, nil, err
		}
		in := p.proxyLocked(name)
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			return 0, nil, tpErr(http.StatusBadRequest, "bad request body: %v", err)
		}
		if err := p.setEnabledLocked(name, in.Enabled); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, p.proxyLocked(name), nil
	})
	h("DELETE /proxies/{proxy}", func(r *http.Request) (int, any, error) {
		// A service cannot be removed; deleting its proxy drops what was
		// set on it, and a name a suite gave it.
		p.mu.Lock()
		defer p.mu.Unlock()
		name := r.PathValue("proxy")
		if _, err := p.serviceOf(name); err != nil {
			return 0, nil, err
		}
		p.rules = slices.DeleteFunc(p.rules, func(r fault.Rule) bool { return strings.HasPrefix(r.ID, toxicPrefix+name+"/") })
		for id := range p.inert {
			if strings.HasPrefix(id, toxicPrefix+name+"/") {
				delete(p.inert, id)
			}
		}
		delete(p.aliases, name)
		return http.StatusNoContent, nil, p.pushLocked()
	})
	h("GET /proxies/{proxy}/toxics", func(r *http.Request) (int, any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		name := r.PathValue("proxy")
		if _, err := p.serviceOf(name); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, p.proxyLocked(name).Toxics, nil
	})
	h("POST /proxies/{proxy}/toxics", func(r *http.Request) (int, any, error) {
		t := toxic{Stream: "downstream", Toxicity: 1}
		if err := json.NewDecoder(r.Body).Decode(&t); err != nil {
			return 0, nil, tpErr(http.StatusBadRequest, "bad request body: %v", err)
		}
		if t.Name == "" {
			t.Name = t.Type + "_" + t.Stream
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		name := r.PathValue("proxy")
		if p.findToxic(name, t.Name) != nil {
			return 0, nil, tpErr(http.StatusConflict, "toxic already exists")
		}
		return p.putToxicLocked(name, t, http.StatusOK)
	})
	h("GET /proxies/{proxy}/toxics/{toxic}", func(r *http.Request) (int, any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		t := p.findToxic(r.PathValue("proxy"), r.PathValue("toxic"))
		if t == nil {
			return 0, nil, tpErr(http.StatusNotFound, "toxic not found")
		}
		return http.StatusOK, t, nil
	})
	h("POST /proxies/{proxy}/toxics/{toxic}", func(r *http.Request) (int, any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		name := r.PathValue("proxy")
		old := p.findToxic(name, r.PathValue("toxic"))
		if old == nil {
			return 0, nil, tpErr(http.StatusNotFound, "toxic not found")
		}
		t := *old
		t.Attributes = map[string]any{}
		for k, v := range old.Attributes {
			t.Attributes[k] = v
		}
		if err := json.NewDecoder(r.Body).Decode(&t); err != nil {
			return 0, nil, tpErr(http.StatusBadRequest, "bad request body: %v", err)
		}
		t.Name, t.Type, t.Stream = old.Name, old.Type, old.Stream
		return p.putToxicLocked(name, t, http.StatusOK)
	})
	h("DELETE /proxies/{proxy}/toxics/{toxic}", func(r *http.Request) (int, any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		name := r.PathValue("proxy")
		if p.findToxic(name, r.PathValue("toxic")) == nil {
			return 0, nil, tpErr(http.StatusNotFound, "toxic not found")
		}
		id := toxicPrefix + name + "/" + r.PathValue("toxic")
		p.rules = slices.DeleteFunc(p.rules, func(r fault.Rule) bool { return r.ID == id })
		delete(p.inert, id)
		return http.StatusNoContent, nil, p.pushLocked()
	})
	return mux
}

// proxyNames are the services with ports, then the names suites gave.
func (p *Plugin) proxyNames() []string {
	var out []string
	for _, s := range p.svcs {
		if len(s.Ports) > 0 {
			out = append(out, s.Name)
		}
	}
	for a := range p.aliases {
		out = append(out, a)
	}
	return out
}

// serviceOf resolves a proxy name to its service.
func (p *Plugin) serviceOf(name string) (sdk.Service, error) {
	if a, ok := p.aliases[name]; ok {
		name = a
	}
	for _, s := range p.svcs {
		if s.Name == name && len(s.Ports) > 0 {
			return s, nil
		}
	}
	return sdk.Service{}, tpErr(http.StatusNotFound, "proxy not found")
}

// adopt takes a proxy a suite creates: a service's name, or any name
// whose upstream is one of a service's ports.
func (p *Plugin) adopt(in tpProxy) error {
	if in.Name == "" {
		return tpErr(http.StatusBadRequest, "missing required field: name")
	}
	if _, err := p.serviceOf(in.Name); err == nil {
		return nil
	}
	_, port, _ := net.SplitHostPort(in.Upstream)
	for _, s := range p.svcs {
		for _, pt := range s.Ports {
			_, lp, _ := net.SplitHostPort(pt.Listen)
			_, up, _ := net.SplitHostPort(pt.Upstream)
			if port != "" && (port == lp || port == up) {
				p.aliases[in.Name] = s.Name
				return nil
			}
		}
	}
	var names []string
	for _, s := range p.svcs {
		if len(s.Ports) > 0 {
			names = append(names, s.Name)
		}
	}
	return tpErr(http.StatusBadRequest, "devstack cannot open new proxies: a proxy is one of the stack's services (%s), by name or by an upstream on one of its ports; %q with upstream %q is neither", strings.Join(names, ", "), in.Name, in.Upstream)
}

func (p *Plugin) proxyLocked(name string) tpProxy {
	s, _ := p.serviceOf(name)
	out := tpProxy{Name: name, Enabled: true, Toxics: []toxic{}}
	if len(s.Ports) > 0 {
		out.Listen, out.Upstream = s.Ports[0].Listen, s.Ports[0].Upstream
	}
	prefix := toxicPrefix + name + "/"
	for _, r := range p.rules {
		if !strings.HasPrefix(r.ID, prefix) {
			continue
		}
		if r.ID == prefix+"disabled" {
			out.Enabled = false
			continue
		}
		out.Toxics = append(out.Toxics, fromRule(r, p.streams[r.ID]))
	}
	for id, t := range p.inert {
		if strings.HasPrefix(id, prefix) {
			out.Toxics = append(out.Toxics, t)
		}
	}
	slices.SortFunc(out.Toxics, func(a, b toxic) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (p *Plugin) findToxic(proxy, name string) *toxic {
	for _, t := range p.proxyLocked(proxy).Toxics {
		if t.Name == name {
			return &t
		}
	}
	return nil
}

func (p *Plugin) setEnabledLocked(name string, enabled bool) error {
	s, err := p.serviceOf(name)
	if err != nil {
		return err
	}
	id := toxicPrefix + name + "/disabled"
	i := slices.IndexFunc(p.rules, func(r fault.Rule) bool { return r.ID == id })
	switch {
	case !enabled && i < 0:
		p.rules = append(p.rules, fault.Rule{ID: id, Service: s.Name, Fault: fault.Fault{Kind: fault.PortDown}})
	case enabled && i >= 0:
		p.rules = slices.Delete(p.rules, i, i+1)
	default:
		return nil
	}
	return p.pushLocked()
}

// putToxicLocked adds or replaces a toxic's rule.
func (p *Plugin) putToxicLocked(proxy string, t toxic, status int) (int, any, error) {
	s, err := p.serviceOf(proxy)
	if err != nil {
		return 0, nil, err
	}
	if t.Stream != "upstream" && t.Stream != "downstream" {
		return 0, nil, tpErr(http.StatusBadRequest, "stream was invalid, can be either upstream or downstream")
	}
	id := toxicPrefix + proxy + "/" + t.Name
	r, err := toRule(id, s.Name, t)
	noop := errors.Is(err, errNoop)
	if err != nil && !noop {
		return 0, nil, tpErr(http.StatusBadRequest, "%v", err)
	}
	old := slices.Clone(p.rules)
	p.rules = slices.DeleteFunc(p.rules, func(r fault.Rule) bool { return r.ID == id })
	delete(p.inert, id)
	if t.Toxicity <= 0 || noop {
		p.inert[id] = t // never applies, but is listed
	} else {
		p.rules = append(p.rules, r)
		p.streams[id] = t.Stream
	}
	if err := p.pushLocked(); err != nil {
		p.rules = old
		return 0, nil, err
	}
	return status, t, nil
}

func attrMs(a map[string]any, key string) (time.Duration, error) {
	n, err := attrInt(a, key)
	return time.Duration(n) * time.Millisecond, err
}

func attrInt(a map[string]any, key string) (int64, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return 0, nil
	}
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case int64:
		f = float64(n)
	case int:
		f = float64(n)
	default:
		ok = false
	}
	if !ok || f < 0 || f != math.Trunc(f) {
		return 0, fmt.Errorf("attribute %s must be a whole number above or at 0, not %v", key, v)
	}
	return int64(f), nil
}

// errNoop is a toxic that does nothing (a latency of 0): listed, never
// applied.
var errNoop = errors.New("no-op toxic")

// toRule maps a toxic onto a fault rule.
func toRule(id, service string, t toxic) (fault.Rule, error) {
	r := fault.Rule{ID: id, Service: service}
	if t.Toxicity > 0 && t.Toxicity < 1 {
		r.Probability = t.Toxicity
	}
	f := &r.Fault
	var err error
	switch t.Type {
	case "latency":
		f.Kind, f.Dist = fault.Latency, fault.Uniform
		if f.Duration, err = attrMs(t.Attributes, "latency"); err == nil {
			f.Jitter, err = attrMs(t.Attributes, "jitter")
		}
		if t.Stream == "downstream" {
			r.Direction = fault.Response
		}
		if err == nil && f.Duration == 0 && f.Jitter == 0 {
			return r, errNoop // Toxiproxy's default latency is 0
		}
	case "bandwidth":
		f.Kind = fault.Bandwidth
		var kb int64
		kb, err = attrInt(t.Attributes, "rate")
		f.Rate = kb * 1000
	case "slow_close":
		f.Kind = fault.SlowClose
		f.Duration, err = attrMs(t.Attributes, "delay")
	case "timeout":
		f.Kind = fault.Timeout
		f.Duration, err = attrMs(t.Attributes, "timeout")
	case "reset_peer":
		f.Kind = fault.Reset
		f.Duration, err = attrMs(t.Attributes, "timeout")
	case "limit_data":
		f.Kind = fault.LimitData
		f.Bytes, err = attrInt(t.Attributes, "bytes")
	default:
		return r, fmt.Errorf("toxic type %q is not one devstack maps (latency, bandwidth, slow_close, timeout, reset_peer, limit_data)", t.Type)
	}
	if err != nil {
		return r, fmt.Errorf("%s toxic: %w", t.Type, err)
	}
	return r, r.Validate()
}

// fromRule is the toxic a rule stands for.
func fromRule(r fault.Rule, stream string) toxic {
	_, name, _ := strings.Cut(strings.TrimPrefix(r.ID, toxicPrefix), "/")
	if stream == "" {
		stream = "downstream"
		if r.Fault.Kind == fault.Latency && r.Direction == fault.Request {
			stream = "upstream"
		}
	}
	t := toxic{Name: name, Stream: stream, Toxicity: 1, Attributes: map[string]any{}}
	if r.Probability > 0 {
		t.Toxicity = r.Probability
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	f := r.Fault
	switch f.Kind {
	case fault.Latency:
		t.Type, t.Attributes["latency"], t.Attributes["jitter"] = "latency", ms(f.Duration), ms(f.Jitter)
	case fault.Bandwidth:
		t.Type, t.Attributes["rate"] = "bandwidth", f.Rate/1000
	case fault.SlowClose:
		t.Type, t.Attributes["delay"] = "slow_close", ms(f.Duration)
	case fault.Timeout:
		t.Type, t.Attributes["timeout"] = "timeout", ms(f.Duration)
	case fault.Reset:
		t.Type, t.Attributes["timeout"] = "reset_peer", ms(f.Duration)
	case fault.LimitData:
		t.Type, t.Attributes["bytes"] = "limit_data", f.Bytes
	}
	return t
}

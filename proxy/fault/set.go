package fault

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"
)

// Options tune Compile.
type Options struct {
	// HeaderTrigger lets a request ask for a fault on its own hop with an
	// X-Devstack-Fault header (see ParseHeader). Off by default: anyone
	// who can reach a port could otherwise slow the stack down.
	HeaderTrigger bool
	// Rand draws the per-request probability and jitter; default the
	// runtime's lock-free generator. Tests seed their own (and then decide
	// from one goroutine).
	Rand func() uint64
	// Previous is the set being replaced: a rule kept by ID keeps its count
	// of matches, so "first N" means N across edits of other rules.
	Previous *Set
}

// Set is a compiled, immutable rule set. The proxy reads the current one
// from a Table on every request.
type Set struct {
	rules   []Rule                 // as given, IDs filled in, for listing
	by      map[string][]*compiled // target service → its rules, in order
	trigger bool
	rand    func() uint64
}

type compiled struct {
	rule      *Rule
	threshold uint64 // a draw below it applies the fault; 0 always
	re        *regexp.Regexp
	hits      *atomic.Int64 // matches so far, for First
	tcp       bool          // applies to TCP connections too
}

// Compile validates rules and builds a Set. Rules without an ID get one
// ("f1", "f2", ... skipping IDs in use).
func Compile(rules []Rule, o Options) (*Set, error) {
	s := &Set{rules: make([]Rule, len(rules)), by: map[string][]*compiled{}, trigger: o.HeaderTrigger, rand: o.Rand}
	if s.rand == nil {
		s.rand = rand.Uint64
	}
	copy(s.rules, rules)
	used := map[string]bool{}
	for _, r := range s.rules {
		if r.ID != "" {
			if used[r.ID] {
				return nil, fmt.Errorf("fault rule id %q is used twice", r.ID)
			}
			used[r.ID] = true
		}
	}
	next := 1
	for i := range s.rules {
		r := &s.rules[i]
		for r.ID == "" {
			if id := "f" + strconv.Itoa(next); !used[id] {
				r.ID, used[id] = id, true
			}
			next++
		}
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if r.Fault.Dist == Fixed && r.Fault.Jitter > 0 {
			r.Fault.Dist = Uniform
		}
		c := &compiled{rule: r, hits: new(atomic.Int64), tcp: !r.httpMatchers() && !r.Fault.Kind.httpOnly() && r.Direction == Request}
		if p := r.Probability; p > 0 && p < 1 {
			c.threshold = uint64(p * (1 << 63) * 2)
		}
		if h := r.Header; h != nil && h.Regex != "" {
			c.re = regexp.MustCompile(h.Regex) // Validate compiled it already
		}
		if prev := o.Previous.find(r.ID); prev != nil && prev.rule.Service == r.Service {
			c.hits = prev.hits
		}
		s.by[r.Service] = append(s.by[r.Service], c)
	}
	return s, nil
}

func (s *Set) find(id string) *compiled {
	if s == nil {
		return nil
	}
	for _, cs := range s.by {
		for _, c := range cs {
			if c.rule.ID == id {
				return c
			}
		}
	}
	return nil
}

// Rules returns a copy of the set's rules, IDs filled in.
func (s *Set) Rules() []Rule {
	if s == nil {
		return nil
	}
	return append([]Rule(nil), s.rules...)
}

// HeaderTrigger reports whether X-Devstack-Fault headers are obeyed.
func (s *Set) HeaderTrigger() bool { return s != nil && s.trigger }

// Targets reports whether any rule names service, or headers may trigger
// faults: the proxy's quick test before it builds a Request.
func (s *Set) Targets(service string) bool {
	return s != nil && (s.trigger || len(s.by[service]) > 0)
}

// NextExpiry is the earliest Expires among the rules (zero if none), when
// the owner should compile the set again without the expired ones.
func (s *Set) NextExpiry() time.Time {
	var t time.Time
	if s == nil {
		return t
	}
	for _, r := range s.rules {
		if !r.Expires.IsZero() && (t.IsZero() || r.Expires.Before(t)) {
			t = r.Expires
		}
	}
	return t
}

// Headers is how the proxy lends a request's headers to Decide.
type Headers interface {
	// Header returns the value of the named header (canonical or not) and
	// whether it is present.
	Header(name string) (string, bool)
}

// Req is what Decide looks at. It is passed by pointer and never kept.
type Req struct {
	Service string // the callee
	Caller  string // "" for a client outside the stack
	// TCP marks a TCP connection (no method, path or headers): only rules
	// without HTTP matchers and with a kind that works on bytes apply.
	TCP    bool
	Method string
	Path   string // without the query
	Header Headers
}

// TriggerHeader is the header that asks for a fault when the set allows it.
const TriggerHeader = "X-Devstack-Fault"

// Decide fills d with what to do to the request and reports whether there
// is anything. When no rule names the service (and headers trigger
// nothing) it returns false after one map lookup, allocating nothing.
func (s *Set) Decide(r *Req, d *Decision) bool {
	*d = Decision{}
	if s == nil {
		return false
	}
	if cs := s.by[r.Service]; len(cs) > 0 {
		now := time.Time{}
		for _, c := range cs {
			if !s.matches(c, r, &now) {
				continue
			}
			d.add(c.rule.Fault, c.rule.Direction, s.rand)
		}
	}
	if s.trigger && !r.TCP && r.Header != nil {
		if v, ok := r.Header.Header(TriggerHeader); ok {
			if f, dir, err := ParseHeader(v); err == nil {
				d.add(f, dir, s.rand)
			} else {
				d.TriggerErr = err
			}
		}
	}
	return d.n > 0
}

func (s *Set) matches(c *compiled, r *Req, now *time.Time) bool {
	rule := c.rule
	if r.TCP && !c.tcp {
		return false
	}
	if rule.Caller != "" && rule.Caller != r.Caller && (rule.Caller != "client" || r.Caller != "") {
		return false
	}
	if rule.Method != "" && rule.Method != r.Method {
		return false
	}
	if rule.Route != "" && !match(rule.Route, r.Path) {
		return false
	}
	if h := rule.Header; h != nil {
		if r.Header == nil {
			return false
		}
		v, ok := r.Header.Header(h.Name)
		switch {
		case !ok:
			return false
		case c.re != nil && !c.re.MatchString(v):
			return false
		case h.Value != "" && h.Value != v:
			return false
		}
	}
	if !rule.Expires.IsZero() {
		if now.IsZero() {
			*now = time.Now()
		}
		if !now.Before(rule.Expires) {
			return false
		}
	}
	if rule.First > 0 && c.hits.Add(1) > int64(rule.First) {
		return false
	}
	return c.threshold == 0 || s.rand() < c.threshold
}

// maxApplied bounds the faults one Decision records; more matching rules
// still act, they are only not labelled separately.
const maxApplied = 4

// Decision is what the proxy's fault step does to one request. Latencies
// add up; the first terminal fault (abort, reset, hang, timeout, port
// down) wins; the tightest bandwidth wins.
type Decision struct {
	// Delay holds the request before it is forwarded; RespDelay holds the
	// response before its first byte is relayed.
	Delay, RespDelay time.Duration
	// Stop is the terminal fault, KindNone if none. With StopOnResponse it
	// acts once the service answered (the answer is dropped).
	Stop           Kind
	StopOnResponse bool
	Status         int           // Abort's HTTP status, AbortGRPC's code
	Body           string        // Abort's body, AbortGRPC's message
	For            time.Duration // Hang's or Timeout's length; 0 unbounded
	// Rate limits the response to bytes per second (0: no limit).
	Rate int64
	// SlowChunk bytes every SlowEvery: a slow body.
	SlowChunk int
	SlowEvery time.Duration
	// LimitBytes closes the connection after that many response bytes (0:
	// no limit); CloseDelay holds the connection's close that long.
	LimitBytes int64
	CloseDelay time.Duration
	// TriggerErr is why an X-Devstack-Fault header was ignored.
	TriggerErr error

	n       int
	applied [maxApplied]applied
}

type applied struct {
	kind   Kind
	dir    Direction
	d      time.Duration // the drawn latency, a hang's length
	status int
	rate   int64
}

func (d *Decision) add(f Fault, dir Direction, rnd func() uint64) {
	a := applied{kind: f.Kind, dir: dir, status: f.Status, rate: f.Rate, d: f.Duration}
	switch f.Kind {
	case Latency:
		a.d = draw(f, rnd)
		if dir == Response {
			d.RespDelay += a.d
		} else {
			d.Delay += a.d
		}
	case Abort, AbortGRPC, Reset, Hang, Timeout, PortDown:
		if d.Stop != KindNone {
			return // the first terminal fault wins; the others never acted
		}
		d.Stop, d.StopOnResponse = f.Kind, dir == Response
		d.Status, d.Body, d.For = f.Status, f.Body, f.Duration
	case Bandwidth:
		if d.Rate == 0 || f.Rate < d.Rate {
			d.Rate = f.Rate
		}
	case SlowBody:
		if d.SlowEvery != 0 {
			return
		}
		d.SlowChunk, d.SlowEvery = max(f.Chunk, 1), f.Duration
	case LimitData:
		if d.LimitBytes == 0 || f.Bytes < d.LimitBytes {
			d.LimitBytes = f.Bytes
		}
		a.rate = f.Bytes
	case SlowClose:
		d.CloseDelay = max(d.CloseDelay, f.Duration)
	}
	if d.n < maxApplied {
		d.applied[d.n] = a
	}
	d.n++
}

// draw picks a latency from the fault's distribution.
func draw(f Fault, rnd func() uint64) time.Duration {
	if f.Jitter == 0 || f.Dist == Fixed {
		return f.Duration
	}
	var x float64
	switch f.Dist {
	case Uniform:
		x = float64(f.Duration) + (2*unit(rnd)-1)*float64(f.Jitter)
	case Normal:
		// Box–Muller from two uniform draws; 1-u keeps the log finite.
		u1, u2 := 1-unit(rnd), unit(rnd)
		x = float64(f.Duration) + float64(f.Jitter)*math.Sqrt(-2*math.Log(u1))*math.Cos(2*math.Pi*u2)
	}
	return time.Duration(max(x, 0))
}

// unit is a uniform draw in [0, 1).
func unit(rnd func() uint64) float64 { return float64(rnd()>>11) / (1 << 53) }

// Any reports whether the decision does anything.
func (d *Decision) Any() bool { return d.n > 0 }

// AppendLabels appends one label per applied fault, as the hop's span
// records them: "latency 203ms", "latency 50ms on response", "abort 503",
// "grpc-abort 14", "reset", "hang", "bandwidth 1024B/s", "slow-body".
// It allocates only when the decision did something.
func (d *Decision) AppendLabels(dst []string) []string {
	for i := range min(d.n, maxApplied) {
		a := d.applied[i]
		var s string
		switch a.kind {
		case Latency:
			s = "latency " + a.d.Round(time.Microsecond).String()
		case Abort, AbortGRPC:
			s = a.kind.String() + " " + strconv.Itoa(a.status)
		case LimitData:
			s = "limit-data " + strconv.FormatInt(a.rate, 10) + "B"
		case SlowClose:
			s = "slow-close " + a.d.String()
		case Hang, Timeout:
			s = a.kind.String()
			if a.d > 0 {
				s += " " + a.d.String()
			}
		case Reset:
			s = "reset"
			if a.d > 0 {
				s += " after " + a.d.String()
			}
		case Bandwidth:
			s = "bandwidth " + strconv.FormatInt(a.rate, 10) + "B/s"
		default:
			s = a.kind.String()
		}
		if a.dir == Response {
			s += " on response"
		}
		dst = append(dst, s)
	}
	return dst
}

// Table holds the current Set; the proxy loads it per request without a
// lock, the fault plugin's host stores a new one whole.
type Table struct{ p atomic.Pointer[Set] }

// Load returns the current set (nil: no faults).
func (t *Table) Load() *Set { return t.p.Load() }

// Store makes s the current set.
func (t *Table) Store(s *Set) { t.p.Store(s) }

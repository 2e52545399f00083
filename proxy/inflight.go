package proxy

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// recentHops is how many hops stay known by span id after they begin, so
// that a call made after the response that caused it (a background job
// carrying the context on) still links to its hop.
const recentHops = 1 << 16

// hops tracks in-flight and recently finished hops. It answers the linking
// questions of a new hop: is this parent id a hop we recorded, which hop of
// this trace is the caller serving, and which hop is this caller serving
// right now.
type hops struct {
	mu sync.Mutex
	// recent names the callee of the last recentHops hops begun, by
	// sequence number modulo recentHops. A hop's span id is its sequence
	// number, scrambled (see spanIDs): so a parent id leads straight to
	// the slot that may hold it, with no hash table to fill and empty on
	// every hop. It keeps the name, not the span: a recent hop's span is
	// the store's to keep or reuse. A hop in flight for longer than the
	// ring lasts is still found through byTrace.
	recent  []recentHop
	seq     uint64 // hops begun
	ids     spanIDs
	byTrace map[trace.TraceID][]*trace.Span // in flight only
	// byCallee holds the hops in flight to each service. Its entries stay
	// once made (services are few), so that a hop costs one lookup of it
	// to begin and one to end.
	byCallee map[string]*calleeHops
	flying   int // hops in flight
	// adopted tracks the inferred children of each in-flight hop that has
	// any (see adopter).
	adopted map[trace.SpanID]adoption
	// spare are emptied byTrace lists, reused: most hops start a trace.
	spare [][]*trace.Span
}

// maxSpareLists bounds hops.spare.
const maxSpareLists = 256

// calleeHops are the hops in flight to one service.
type calleeHops struct{ spans []*trace.Span }

type recentHop struct {
	id     trace.SpanID
	callee string
}

func newHops() *hops {
	return &hops{
		recent:   make([]recentHop, recentHops),
		ids:      spanIDs{key: rand.Uint64()},
		byTrace:  map[trace.TraceID][]*trace.Span{},
		byCallee: map[string]*calleeHops{},
		adopted:  map[trace.SpanID]adoption{},
	}
}

// adoption is what an in-flight hop's inferred children tell of what its
// service is doing for it.
type adoption struct {
	flying int       // children in flight: the request waits on them
	last   time.Time // when the latest child ended
}

// link is the outcome of linking a new hop.
type link struct {
	traceID  trace.TraceID
	parent   trace.SpanID
	caller   string
	inferred bool // the caller sent no context: linked by who is calling
	broken   bool // the caller is a service that did not propagate
	// candidates, when inferred, is how many in-flight hops the call
	// could belong to: 1 when the link is certain.
	candidates int
	// flags and sampling, when inferred: those the adopting hop sent.
	flags    byte
	sampling trace.Sampling
}

// begin links a new hop sp (its callee and start set) to its trace and
// parent, from the context tc extracted from its request; gives it its
// span id (also set in tc, to send upstream); fills in its trace, parent
// and caller; and registers it as in flight: all under one lock. An
// inferred link changes tc to continue the adopting hop's trace as that
// hop sent it: its trace id, flags and sampling decision (the random-id
// flag tc had for the new trace it started is not ours to claim on an id
// made elsewhere).
func (h *hops) begin(tc *propagate.Context, sp *trace.Span, ci *connInfo, callers CallerResolver) link {
	h.mu.Lock()
	defer h.mu.Unlock()
	ln := h.resolve(tc, ci, callers)
	if ln.inferred {
		tc.TraceID, tc.Continued, tc.Flags = ln.traceID, true, ln.flags
		tc.SetSampling(ln.sampling)
	}
	sp.Flags, sp.Sampling = tc.Flags, tc.Sampling()
	for { // the hop's own id: never zero, never its parent's
		tc.SpanID = h.ids.encode(h.seq)
		h.seq++
		if tc.SpanID.IsValid() && tc.SpanID != tc.ParentID {
			break
		}
	}
	sp.TraceID, sp.SpanID, sp.ParentID, sp.Inferred, sp.Caller = ln.traceID, tc.SpanID, ln.parent, ln.inferred, ln.caller
	sp.Candidates = ln.candidates
	h.recent[(h.seq-1)%recentHops] = recentHop{sp.SpanID, sp.Callee}
	inTrace, ok := h.byTrace[sp.TraceID]
	if !ok && len(h.spare) > 0 {
		inTrace, h.spare = h.spare[len(h.spare)-1], h.spare[:len(h.spare)-1]
	}
	h.byTrace[sp.TraceID] = append(inTrace, sp)
	c := h.byCallee[sp.Callee]
	if c == nil {
		c = &calleeHops{}
		h.byCallee[sp.Callee] = c
	}
	c.spans = append(c.spans, sp)
	h.flying++
	return ln
}

// resolve links a hop to callee given the extracted context, with h.mu
// held. The calling service is looked up by the connection's socket (ci
// with callers) only when the context alone cannot answer, and with h.mu
// released, because that may read /proc.
func (h *hops) resolve(tc *propagate.Context, ci *connInfo, callers CallerResolver) link {
	caller := func() string { return ci.resolve(callers) }
	if tc.Continued {
		// A parent id that is one of our hops: its callee is the caller.
		if callee, ok := h.recentHop(tc.ParentID); ok {
			return link{traceID: tc.TraceID, parent: tc.ParentID, caller: callee}
		}
		// An instrumented service made its own span: nest under the hop
		// of this trace that the caller is serving.
		if inTrace := h.byTrace[tc.TraceID]; len(inTrace) > 0 {
			who := ""
			if len(inTrace) > 1 {
				h.mu.Unlock()
				who = caller()
				h.mu.Lock()
			}
			if p := latest(h.byTrace[tc.TraceID], who); p != nil {
				return link{traceID: tc.TraceID, parent: p.SpanID, caller: p.Callee}
			}
		}
		// Someone else's trace (a client's own tracer): keep its parent.
		return link{traceID: tc.TraceID, parent: tc.ParentID}
	}
	if h.flying == 0 {
		return link{traceID: tc.TraceID}
	}
	// No context at all. If the caller is a service serving a hop right
	// now, this call most likely belongs to that request: the service
	// dropped the trace context (broken propagation).
	h.mu.Unlock()
	who := caller()
	h.mu.Lock()
	if who == "" {
		return link{traceID: tc.TraceID}
	}
	if p, n := h.adopter(h.callee(who), evidence{requestID: tc.RequestID, baggage: tc.Baggage}); p != nil {
		a := h.adopted[p.SpanID]
		a.flying++
		h.adopted[p.SpanID] = a
		return link{traceID: p.TraceID, parent: p.SpanID, caller: who, inferred: true, broken: true, flags: p.Flags, sampling: p.Sampling, candidates: n}
	}
	return link{traceID: tc.TraceID, caller: who}
}

// adopter picks which of a service's in-flight hops a context-less call
// most likely belongs to, and says among how many it chose: its evidence.
// With one request in flight the answer is sure. A call that carries on
// what the request it serves carried narrows the choice (see evidence):
// to one, most often. Otherwise it is a guess among all of them, which
// goes by what the service is doing for each: a request
// that waits on a call already is less likely to make another than one
// that does not (most services call out one call at a time), and among
// those alike, the request whose last event came latest (it arrived, or a
// call made for it answered) is the one the service just took up again.
// So with two requests overlapping, each one's next call follows its
// previous call's answer, instead of going to whichever came in last.
func (h *hops) adopter(spans []*trace.Span, ev evidence) (*trace.Span, int) {
	var (
		best     *trace.Span
		bestA    adoption
		bestLast time.Time
	)
	match, n := ev.narrow(spans)
	for _, s := range spans {
		if match != nil && !match(s) {
			continue
		}
		a := h.adopted[s.SpanID]
		last := s.Start
		if a.last.After(last) {
			last = a.last
		}
		if best == nil || (a.flying == 0) != (bestA.flying == 0) && a.flying == 0 ||
			(a.flying == 0) == (bestA.flying == 0) && last.After(bestLast) {
			best, bestA, bestLast = s, a, last
		}
	}
	return best, n
}

// evidence is what a call without trace context still carries of the
// request it was made for: its X-Request-ID, which many services forward
// while dropping the trace headers, and its baggage, whose sentry-trace_id
// (written by the proxy at the head of every trace, and frozen there)
// names the trace.
type evidence struct {
	requestID string
	baggage   string
}

// narrow returns which of spans the evidence allows, and how many they
// are; nil and len(spans) when it allows no fewer (or none at all: then
// it is not evidence of these requests).
func (ev evidence) narrow(spans []*trace.Span) (func(*trace.Span) bool, int) {
	count := func(match func(*trace.Span) bool) int {
		n := 0
		for _, s := range spans {
			if match(s) {
				n++
			}
		}
		return n
	}
	if ev.requestID != "" {
		match := func(s *trace.Span) bool { return s.RequestID == ev.requestID }
		if n := count(match); n > 0 {
			return match, n
		}
	}
	if id, ok := baggageTraceID(ev.baggage); ok {
		match := func(s *trace.Span) bool { return s.TraceID == id }
		if n := count(match); n > 0 {
			return match, n
		}
	}
	return nil, len(spans)
}

// baggageTraceID reads the sentry-trace_id member of a baggage value.
func baggageTraceID(baggage string) (trace.TraceID, bool) {
	for rest := baggage; rest != ""; {
		var m string
		m, rest, _ = strings.Cut(rest, ",")
		k, v, ok := strings.Cut(m, "=")
		if !ok || strings.TrimSpace(k) != "sentry-trace_id" {
			continue
		}
		v, _, _ = strings.Cut(v, ";")
		return trace.ParseTraceID(strings.TrimSpace(v))
	}
	return trace.TraceID{}, false
}

// latest returns the most recently started span, with Callee == who when
// who is set (falling back to any).
func latest(spans []*trace.Span, who string) *trace.Span {
	var best, any *trace.Span
	for _, s := range spans {
		if any == nil || s.Start.After(any.Start) {
			any = s
		}
		if who != "" && s.Callee == who && (best == nil || s.Start.After(best.Start)) {
			best = s
		}
	}
	if best != nil {
		return best
	}
	return any
}

// isRecent reports whether id names one of the last recentHops hops.
func (h *hops) isRecent(id trace.SpanID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.recentHop(id)
	return ok
}

// recentHop looks one of the last recentHops hops up by span id.
func (h *hops) recentHop(id trace.SpanID) (callee string, ok bool) {
	n := h.ids.decode(id)
	if n >= h.seq || h.seq-n > recentHops {
		return "", false // not one of ours, or too old
	}
	if r := h.recent[n%recentHops]; r.id == id {
		return r.callee, true
	}
	return "", false
}

// spanIDs turns hop sequence numbers into span ids and back: a keyed
// bijection on 64 bits (SplitMix64's finaliser, after adding a random
// key), so that ids look random, differ from run to run, and never repeat
// within one.
type spanIDs struct{ key uint64 }

const (
	mix1 = 0xbf58476d1ce4e5b9
	mix2 = 0x94d049bb133111eb
)

// mix1Inv and mix2Inv are the multiplicative inverses of mix1 and mix2
// modulo 2^64 (Newton's iteration doubles the correct bits each step).
var mix1Inv, mix2Inv = inverse(mix1), inverse(mix2)

func inverse(a uint64) uint64 {
	x := a // correct to 3 bits for odd a
	for range 5 {
		x *= 2 - a*x
	}
	return x
}

func (c spanIDs) encode(n uint64) trace.SpanID {
	z := n + c.key
	z = (z ^ z>>30) * mix1
	z = (z ^ z>>27) * mix2
	z ^= z >> 31
	var id trace.SpanID
	binary.BigEndian.PutUint64(id[:], z)
	return id
}

func (c spanIDs) decode(id trace.SpanID) uint64 {
	z := binary.BigEndian.Uint64(id[:])
	z ^= z>>31 ^ z>>62
	z *= mix2Inv
	z ^= z>>27 ^ z>>54
	z *= mix1Inv
	z ^= z>>30 ^ z>>60
	return z - c.key
}

// end takes a hop out of flight (it stays known by span id).
func (h *hops) end(s *trace.Span) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if inTrace := remove(h.byTrace[s.TraceID], s); len(inTrace) > 0 {
		h.byTrace[s.TraceID] = inTrace
	} else {
		delete(h.byTrace, s.TraceID)
		if cap(inTrace) > 0 && len(h.spare) < maxSpareLists {
			h.spare = append(h.spare, inTrace) // its room, for the next trace
		}
	}
	if c := h.byCallee[s.Callee]; c != nil {
		if n := len(c.spans); n > 0 {
			if c.spans = remove(c.spans, s); len(c.spans) < n {
				h.flying--
			}
		}
	}
	if len(h.adopted) > 0 {
		delete(h.adopted, s.SpanID)
		if a, ok := h.adopted[s.ParentID]; s.Inferred && ok {
			a.flying--
			a.last = s.Start.Add(s.Duration)
			h.adopted[s.ParentID] = a
		}
	}
}

// callee returns the hops in flight to service, with h.mu held.
func (h *hops) callee(service string) []*trace.Span {
	if c := h.byCallee[service]; c != nil {
		return c.spans
	}
	return nil
}

func remove(list []*trace.Span, s *trace.Span) []*trace.Span {
	for i, x := range list {
		if x == s {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			return list[:len(list)-1]
		}
	}
	return list
}

// inFlight counts the hops to callee in flight.
func (h *hops) inFlight(callee string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.callee(callee))
}

// begunBefore counts the hops to callee in flight that began before t.
func (h *hops) begunBefore(callee string, t time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, sp := range h.callee(callee) {
		if sp.Start.Before(t) {
			n++
		}
	}
	return n
}

package proxy

import (
	"net/netip"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// A finished hop stays known by span id until recentHops more hops have
// begun (a background call carrying its context still links to it), and
// no longer.
func TestRecentHopsAreKeptForRecentHops(t *testing.T) {
	h := newHops()
	begin := func(tc propagate.Context, callee string) (*trace.Span, link) {
		sp := &trace.Span{Callee: callee}
		ln := h.begin(&tc, sp, nil, nil)
		h.end(sp)
		return sp, ln
	}
	hop := func(callee string) *trace.Span {
		sp, _ := begin(propagate.Context{TraceID: trace.NewTraceID(nil)}, callee)
		return sp
	}
	first := hop("orders")
	linkOf := func(sp *trace.Span) link {
		_, ln := begin(propagate.Context{TraceID: sp.TraceID, ParentID: sp.SpanID, Continued: true}, "inventory")
		return ln
	}
	for range recentHops - 1 {
		hop("other")
	}
	// recentHops-1 hops began after first; linkOf links, then begins one.
	if ln := linkOf(first); ln.caller != "orders" || ln.parent != first.SpanID {
		t.Fatalf("a hop %d hops back: link %+v; want caller orders", recentHops-1, ln)
	}
	if ln := linkOf(first); ln.caller != "" {
		t.Fatalf("a hop %d hops back is still linked: %+v", recentHops, ln)
	}
	// An id that is not ours, and the zero id, link to nothing.
	for _, id := range []trace.SpanID{trace.NewSpanID(nil), {}} {
		if ln := linkOf(&trace.Span{TraceID: first.TraceID, SpanID: id}); ln.caller != "" {
			t.Fatalf("foreign parent id %s linked: %+v", id, ln)
		}
	}
	if len(h.byTrace) != 0 || h.flying != 0 || len(h.callee("orders")) != 0 || len(h.callee("other")) != 0 {
		t.Fatalf("finished hops still in flight: %d traces, %d hops", len(h.byTrace), h.flying)
	}
}

// Span ids are the hop sequence numbers through a bijection: decoding
// gives the number back, and distinct numbers give distinct, non-zero
// looking ids whatever the key.
func TestSpanIDsRoundTrip(t *testing.T) {
	for _, key := range []uint64{0, 1, 0xdeadbeefcafef00d, ^uint64(0)} {
		c := spanIDs{key: key}
		seen := map[trace.SpanID]bool{}
		for _, n := range []uint64{0, 1, 2, 1 << 32, ^uint64(0), 12345678901234567} {
			id := c.encode(n)
			if got := c.decode(id); got != n {
				t.Fatalf("key %x: decode(encode(%d)) = %d", key, n, got)
			}
			if seen[id] {
				t.Fatalf("key %x: id %s repeated", key, id)
			}
			seen[id] = true
		}
		clear(seen)
		for n := range uint64(100_000) {
			id := c.encode(n)
			if c.decode(id) != n || seen[id] {
				t.Fatalf("key %x: sequence %d: id %s", key, n, id)
			}
			seen[id] = true
		}
	}
	if mix1*mix1Inv != 1 || mix2*mix2Inv != 1 {
		t.Fatal("the inverses are wrong")
	}
}

// fixedCaller names every connection as one service.
type fixedCaller string

func (f fixedCaller) Caller(_, _ netip.AddrPort) string { return string(f) }

// An inferred link says among how many requests it chose: certain with
// one in flight, a guess among N with N, and certain again when the call
// carries the X-Request-ID of the request it serves.
func TestInferredLinkCarriesItsEvidence(t *testing.T) {
	h := newHops()
	start := func(rid string) *trace.Span {
		sp := &trace.Span{Callee: "orders", RequestID: rid}
		h.begin(&propagate.Context{TraceID: trace.NewTraceID(nil), RequestID: rid}, sp, nil, nil)
		return sp
	}
	call := func(rid string) *trace.Span {
		sp := &trace.Span{Callee: "inventory", RequestID: rid}
		h.begin(&propagate.Context{TraceID: trace.NewTraceID(nil), RequestID: rid}, sp, &connInfo{}, fixedCaller("orders"))
		h.end(sp)
		return sp
	}
	a := start("rid-a")
	if c := call("fresh-1"); !c.Inferred || c.Candidates != 1 || c.ParentID != a.SpanID || c.Ambiguous() {
		t.Errorf("one request in flight: %+v", c)
	}
	b := start("rid-b")
	start("rid-c")
	if c := call("fresh-2"); !c.Inferred || c.Candidates != 3 || !c.Ambiguous() {
		t.Errorf("three in flight, no evidence: candidates %d, want 3", c.Candidates)
	}
	if c := call("rid-b"); c.Candidates != 1 || c.ParentID != b.SpanID || c.TraceID != b.TraceID {
		t.Errorf("a call carrying rid-b: candidates %d, parent %s; want 1, %s", c.Candidates, c.ParentID, b.SpanID)
	}
	// The baggage the proxy wrote names the trace: the call carrying it
	// belongs to that trace's request.
	sp := &trace.Span{Callee: "inventory"}
	h.begin(&propagate.Context{TraceID: trace.NewTraceID(nil), RequestID: "fresh-3", Baggage: "k=v,sentry-trace_id=" + b.TraceID.String() + ",sentry-sampled=true"},
		sp, &connInfo{}, fixedCaller("orders"))
	h.end(sp)
	if sp.Candidates != 1 || sp.ParentID != b.SpanID {
		t.Errorf("a call carrying b's baggage: candidates %d, parent %s; want 1, %s", sp.Candidates, sp.ParentID, b.SpanID)
	}
	// Evidence of no request in flight is no evidence: a guess among all.
	if c := call("rid-gone"); c.Candidates != 3 {
		t.Errorf("a request id no hop has: candidates %d, want 3", c.Candidates)
	}
	// A context the caller sent is no inference at all.
	sp = &trace.Span{Callee: "inventory"}
	h.begin(&propagate.Context{TraceID: b.TraceID, ParentID: b.SpanID, Continued: true}, sp, &connInfo{}, fixedCaller("orders"))
	if sp.Inferred || sp.Candidates != 0 {
		t.Errorf("a propagated call: inferred %v, candidates %d", sp.Inferred, sp.Candidates)
	}
}

package proxy

import (
	"testing"

	"github.com/devstack/devstack/proxy/trace"
)

// A finished hop stays known by span id for at least recentHops/2 later
// hops (a background call carrying its context still links to it), and
// the index stays bounded however many hops pass.
func TestRecentHopsAreKeptForAGenerationAndBounded(t *testing.T) {
	h := newHops()
	begin := func(tc trace.Context, callee string) (*trace.Span, link) {
		tc.SpanID = trace.NewSpanID(nil)
		sp := &trace.Span{Callee: callee}
		ln := h.begin(&tc, sp, nil, nil)
		h.end(sp)
		return sp, ln
	}
	hop := func(callee string) *trace.Span {
		sp, _ := begin(trace.Context{TraceID: trace.NewTraceID(nil)}, callee)
		return sp
	}
	first := hop("orders")
	linkOf := func(sp *trace.Span) link {
		_, ln := begin(trace.Context{TraceID: sp.TraceID, ParentID: sp.SpanID, Continued: true}, "inventory")
		return ln
	}
	for range recentHops/2 - 1 {
		hop("other")
	}
	if ln := linkOf(first); ln.caller != "orders" || ln.parent != first.SpanID {
		t.Fatalf("a hop %d hops back: link %+v; want caller orders", recentHops/2-1, ln)
	}
	for range 3 * recentHops {
		hop("other")
	}
	if n := len(h.bySpan) + len(h.older); n > recentHops {
		t.Fatalf("%d hops indexed; want at most %d", n, recentHops)
	}
	if ln := linkOf(first); ln.caller != "" {
		t.Fatalf("a hop %d hops back is still linked: %+v", 3*recentHops, ln)
	}
	if len(h.byTrace) != 0 || len(h.byCallee) != 0 {
		t.Fatalf("finished hops still in flight: %d traces, %d callees", len(h.byTrace), len(h.byCallee))
	}
}

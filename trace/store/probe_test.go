package store_test

import (
	"testing"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

// The traces of devstack's own healthcheck probes are left out of a
// listing unless the query asks for them: in the store, in the summary
// file a stopped stack is listed from, and in a replay of the span log.
func TestProbeTracesAreListedOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	opts := store.Options{MaxSpans: 100}
	st, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	probe := hop(1, 10, 0, trace.ProbeCaller("gateway"), "gateway", 100, 2)
	probe.Route = "/healthz"
	// A probe of a port whose service calls on: the trace is still the
	// probe's (its root is).
	call := hop(2, 20, 0, trace.ProbeCaller("orders"), "orders", 200, 5)
	recordFlush(st, probe, call, hop(2, 21, 20, "orders", "payments", 201, 2), hop(3, 30, 0, "", "gateway", 300, 4))
	check := func(what string, list func(trace.Query) []trace.Summary) {
		t.Helper()
		if got := list(trace.Query{}); len(got) != 1 || got[0].TraceID != traceN(3) {
			t.Errorf("%s: default listing %v; want trace 3 only", what, got)
		}
		if got := list(trace.Query{Probes: true}); len(got) != 3 {
			t.Errorf("%s: with Probes, %d traces; want 3", what, len(got))
		}
		if got := list(trace.Query{Probes: true, Service: "payments"}); len(got) != 1 || got[0].TraceID != traceN(2) {
			t.Errorf("%s: with Probes, through payments: %v; want trace 2", what, got)
		}
	}
	check("store", st.Traces)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := store.OpenSummary(dir, opts.MaxSpans)
	if err != nil {
		t.Fatal(err)
	}
	check("summary file", f.Traces)
	ro := openStore(t, dir, store.Options{MaxSpans: opts.MaxSpans, ReadOnly: true})
	check("replay", ro.Traces)
}

package render_test

import (
	"slices"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

// Span builders and store helpers, as the store's tests have them.

var epoch = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func traceN(n int) trace.TraceID {
	var id trace.TraceID
	id[0] = 0xab
	id[15] = byte(n)
	id[14] = byte(n >> 8)
	id[13] = byte(n >> 16)
	return id
}

func spanN(n int) trace.SpanID {
	var id trace.SpanID
	id[0] = 0xcd
	id[7] = byte(n)
	id[6] = byte(n >> 8)
	id[5] = byte(n >> 16)
	return id
}

// hop builds a span of trace t with span id s and parent p (0 = root),
// starting at ms milliseconds after epoch and lasting dur milliseconds.
func hop(t, s, p int, caller, callee string, ms, dur int) *trace.Span {
	sp := &trace.Span{
		TraceID:    traceN(t),
		SpanID:     spanN(s),
		Caller:     caller,
		Callee:     callee,
		Protocol:   "http",
		Method:     "GET",
		Route:      "/" + callee,
		Status:     200,
		GRPCStatus: -1,
		Start:      epoch.Add(time.Duration(ms) * time.Millisecond),
		Duration:   time.Duration(dur) * time.Millisecond,
	}
	if p != 0 {
		sp.ParentID = spanN(p)
	}
	return sp
}

func slicesBackward[T any](s []T) []T {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func openStore(t testing.TB, dir string, opts store.Options) *store.Store {
	t.Helper()
	st, err := store.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// record records spans, flushing often enough that the buffer never fills.
func recordFlush(st *store.Store, spans ...*trace.Span) {
	for i, s := range spans {
		st.Record(s)
		if i%1024 == 1023 {
			st.Flush()
		}
	}
	st.Flush()
}

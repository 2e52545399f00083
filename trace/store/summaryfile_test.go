package store_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

// The summary file a store writes as it closes lists traces exactly as
// the store did, and as a replay of its log does, for every filter; it
// stops answering once the log changes, or when it is damaged.
func TestSummaryFileListsAsTheStore(t *testing.T) {
	dir := t.TempDir()
	// A small store over small segments: traces are evicted and segments
	// deleted on the way, so the file must match what is left.
	opts := store.Options{MaxSpans: 400, SegmentSpans: 50}
	st, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	services := []string{"gateway", "orders", "inventory", "payments", "fraud"}
	var spans []*trace.Span
	for n := 1; n <= 300; n++ {
		hops := 1 + r.IntN(4)
		for i := range hops {
			parent := 0
			caller := ""
			if i > 0 {
				parent, caller = n*10+i-1, services[i-1]
			}
			// Starts jitter: traces arrive a little out of order.
			sp := hop(n, n*10+i, parent, caller, services[i], n*7+r.IntN(20)+i, 1+r.IntN(50))
			sp.Route = fmt.Sprintf("/%s/%d", services[i], r.IntN(3))
			sp.Method = []string{"GET", "POST"}[r.IntN(2)]
			if r.IntN(9) == 0 {
				sp.Status, sp.Error = 503, "upstream said 503"
			}
			if r.IntN(4) == 0 {
				sp.Query = fmt.Sprintf("region=%d", r.IntN(3))
			}
			if i > 0 && r.IntN(5) == 0 {
				sp.Inferred, sp.Candidates = true, 1+r.IntN(3)
			}
			spans = append(spans, sp)
		}
	}
	recordFlush(st, spans...)
	queries := []trace.Query{
		{}, {Limit: 7}, {Limit: 1000}, {Service: "payments"}, {Service: "gateway", Limit: 3},
		{Status: status(503)}, {Status: statusRange("5xx")}, {IDPrefix: traceN(7).String()}, {IDPrefix: "ab0000"}, {QueryHas: "region=1"}, {QueryHas: "region=1", Service: "fraud"}, {Errors: true}, {MinDuration: 30 * time.Millisecond},
		{Since: epoch.Add(1500 * time.Millisecond)}, {Route: "/orders/1"}, {Route: "/inv"},
		{Service: "nobody"}, {Errors: true, Route: "/fraud", MinDuration: 5 * time.Millisecond},
	}
	var live [][]trace.Summary
	for _, q := range queries {
		live = append(live, st.Traces(q))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := store.OpenSummary(dir, opts.MaxSpans)
	if err != nil {
		t.Fatalf("OpenSummary after a clean close: %v", err)
	}
	ro := openStore(t, dir, store.Options{MaxSpans: opts.MaxSpans, ReadOnly: true})
	for i, q := range queries {
		got := f.Traces(q)
		if !reflect.DeepEqual(got, live[i]) {
			t.Errorf("query %+v: the summary file lists\n%v\nthe store listed\n%v", q, got, live[i])
		}
		if replayed := ro.Traces(q); !reflect.DeepEqual(got, replayed) {
			t.Errorf("query %+v: the summary file lists\n%v\na replay of the log lists\n%v", q, got, replayed)
		}
	}
	if len(live[2]) < 50 || len(live[3]) == 0 || len(live[5]) == 0 || len(live[9]) == 0 {
		t.Fatalf("listed %d traces, %d through payments, %d with a 503, %d on /orders/1: the test lost its traces",
			len(live[2]), len(live[3]), len(live[5]), len(live[9]))
	}

	if _, err := store.OpenSummary(dir, 500); err == nil {
		t.Error("OpenSummary answered for a store with another MaxSpans")
	}
	path := filepath.Join(dir, "summary")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 1
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenSummary(dir, opts.MaxSpans); err == nil {
		t.Error("OpenSummary answered from a damaged file")
	}
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	// devstack runs again and dies without closing the store: the log has
	// grown past the file.
	segs, _ := filepath.Glob(filepath.Join(dir, "spans-*.log"))
	fh, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write([]byte{0})
	fh.Close()
	if _, err := store.OpenSummary(dir, opts.MaxSpans); err == nil {
		t.Error("OpenSummary answered though the log changed since it was written")
	}
}

// A read-only store that keeps only some traces gives those exactly as
// the whole store does, and indexes nothing else.
func TestReadOnlyStoreKeepsOnlyTheTracesAskedFor(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{SegmentSpans: 7})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 30; n++ {
		recordFlush(st, hop(n, n*10, 0, "", "gateway", n*10, 9), hop(n, n*10+1, n*10, "gateway", "orders", n*10+1, 5))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	full := openStore(t, dir, store.Options{ReadOnly: true})
	want := map[trace.TraceID]bool{traceN(4): true, traceN(17): true}
	only := openStore(t, dir, store.Options{ReadOnly: true, Only: func(id trace.TraceID) bool { return want[id] }})
	if got := only.Stats(); got.Traces != 2 || got.Spans != 4 {
		t.Errorf("a store keeping 2 traces of 2 spans holds %d traces, %d spans", got.Traces, got.Spans)
	}
	for id := range want {
		if got, all := only.Trace(id), full.Trace(id); len(got) != 2 || !reflect.DeepEqual(got, all) {
			t.Errorf("trace %s: %d spans kept, not the whole store's %d", id, len(got), len(all))
		}
	}
	if got := only.Trace(traceN(5)); got != nil {
		t.Errorf("trace 5 was not asked for, but the store has %d spans of it", len(got))
	}
	if _, err := store.Open(t.TempDir(), store.Options{Only: func(trace.TraceID) bool { return true }}); err == nil {
		t.Error("Open accepted Only for a store that writes")
	}
}

package store_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

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

// typicalHop is a realistic hop: 8 request and 6 response headers, no body.
func typicalHop(r *rand.Rand, t trace.TraceID, parent trace.SpanID, caller, callee string, start time.Time) *trace.Span {
	s := trace.NewSpanID(r)
	reqID := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
	tp := "00-" + t.String() + "-" + s.String() + "-01"
	routes := []string{"/api/v1/orders", "/api/v1/orders/items", "/api/v1/payments/authorize", "/healthz", "/api/v1/inventory/reserve"}
	return &trace.Span{
		TraceID: t, SpanID: s, ParentID: parent,
		Caller: caller, Callee: callee, Protocol: "http", Method: "POST",
		Route: routes[r.IntN(len(routes))], Status: 200, GRPCStatus: -1,
		Start: start, Duration: time.Duration(1+r.IntN(50)) * time.Millisecond, TTFB: time.Millisecond,
		BytesIn: int64(r.IntN(2000)), BytesOut: int64(r.IntN(8000)),
		RequestID: reqID,
		ReqHeaders: []trace.Header{
			{Name: "Host", Value: callee + ":8080"},
			{Name: "User-Agent", Value: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
			{Name: "Accept", Value: "application/json, text/plain, */*"},
			{Name: "Accept-Encoding", Value: "gzip, deflate, br"},
			{Name: "Content-Type", Value: "application/json"},
			{Name: "Authorization", Value: "[redacted]"},
			{Name: "Traceparent", Value: tp},
			{Name: "X-Request-Id", Value: reqID},
		},
		RespHeaders: []trace.Header{
			{Name: "Content-Type", Value: "application/json; charset=utf-8"},
			{Name: "Content-Length", Value: fmt.Sprint(100 + r.IntN(50))},
			{Name: "Date", Value: start.UTC().Format(time.RFC1123)},
			{Name: "Vary", Value: "Accept-Encoding"},
			{Name: "Server", Value: "uvicorn"},
			{Name: "X-Request-Id", Value: reqID},
		},
	}
}

// typicalTrace is a 5-hop chain through the shop.
func typicalTrace(r *rand.Rand, start time.Time) []*trace.Span {
	services := []string{"", "gateway", "orders", "payments", "inventory", "postgres"}
	t := trace.NewTraceID(r)
	var spans []*trace.Span
	var parent trace.SpanID
	for i := 1; i < len(services); i++ {
		s := typicalHop(r, t, parent, services[i-1], services[i], start.Add(time.Duration(i)*time.Millisecond))
		parent = s.SpanID
		spans = append(spans, s)
	}
	return spans
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

// canon is s as the store gives it back: the wall clock in nanoseconds, no
// monotonic reading, local time.
func asStored(s *trace.Span) *trace.Span {
	c := *s
	c.Start = time.Unix(0, s.Start.UnixNano())
	return &c
}

func spanSuffixes(spans []*trace.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.SpanID.String()[12:])
	}
	return out
}

func summaryIDs(sums []trace.Summary) []trace.TraceID {
	var out []trace.TraceID
	for _, s := range sums {
		out = append(out, s.TraceID)
	}
	return out
}

func TestStoreRoundTrip(t *testing.T) {
	for _, dir := range []string{"", "persist"} {
		t.Run(fmt.Sprintf("dir=%q", dir), func(t *testing.T) {
			if dir != "" {
				dir = filepath.Join(t.TempDir(), dir)
			}
			st := openStore(t, dir, store.Options{})
			r := rand.New(rand.NewPCG(1, 2))
			want := typicalTrace(r, time.Now())
			want[2].Error = "connection refused"
			want[2].Faults = []string{"latency 300ms", "abort 503"}
			want[3].ReqBody, want[3].RespBody = `{"sku":"a"}`, `{"ok":true}`
			want[4].Inferred, want[4].Candidates = true, 3
			want[1].Query = "region=EU&token=[redacted]"
			want[4].RespHeaders = nil
			// Spans reach the store when they end: the innermost first.
			recordFlush(st, slicesBackward(want)...)
			got := st.Trace(want[0].TraceID)
			if len(got) != len(want) {
				t.Fatalf("Trace: got %d spans, want %d", len(got), len(want))
			}
			for i := range want {
				if w := asStored(want[i]); !reflect.DeepEqual(got[i], w) {
					t.Errorf("span %d:\n got %+v\nwant %+v", i, got[i], w)
				}
			}
			// Copies: changing one must not change the store.
			got[0].Callee = "changed"
			got[0].ReqHeaders[0].Value = "changed"
			if again := st.Trace(want[0].TraceID); again[0].Callee != "gateway" || again[0].ReqHeaders[0].Value == "changed" {
				t.Error("Trace returned shared spans")
			}
			if st.Trace(traceN(1)) != nil {
				t.Error("Trace of an unknown id: want nil")
			}
		})
	}
}

func slicesBackward[T any](s []T) []T {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func TestStoreSummary(t *testing.T) {
	st := openStore(t, "", store.Options{})
	// Trace 1: gateway → orders → payments, recorded innermost first.
	recordFlush(st,
		hop(1, 3, 2, "orders", "payments", 20, 30),
		hop(1, 2, 1, "gateway", "orders", 10, 60),
	)
	sum := st.Traces(trace.Query{})
	if len(sum) != 1 || sum[0].Root != "orders" {
		t.Fatalf("before the root arrives, the orphan (orders) is the root: %+v", sum)
	}
	root := hop(1, 1, 0, "", "gateway", 0, 100)
	root.Method, root.Route, root.Query, root.Status = "POST", "/checkout", "region=EU", 502
	ambiguous := hop(1, 4, 2, "orders", "inventory", 15, 3)
	ambiguous.Inferred, ambiguous.Candidates = true, 4
	certain := hop(1, 5, 2, "orders", "inventory", 16, 3)
	certain.Inferred, certain.Candidates = true, 1
	recordFlush(st, root, ambiguous, certain)
	got := st.Traces(trace.Query{})
	want := []trace.Summary{{
		TraceID: traceN(1), Root: "gateway", Route: "/checkout", Query: "region=EU", Method: "POST",
		Start: time.Unix(0, epoch.UnixNano()), Duration: 100 * time.Millisecond,
		Spans: 5, Errors: 1, Ambiguous: 1, Status: 502,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Traces:\n got %+v\nwant %+v", got, want)
	}
	if ids := spanSuffixes(st.Trace(traceN(1))); !slices.Equal(ids, []string{"0001", "0002", "0004", "0005", "0003"}) {
		t.Errorf("Trace order = %v, want by start", ids)
	}
}

func TestStoreRootOfLargeTrace(t *testing.T) {
	st := openStore(t, "", store.Options{})
	// 100 children first (past the size where the trace keeps an id set),
	// then their parent, then the real root.
	var spans []*trace.Span
	for i := range 100 {
		spans = append(spans, hop(1, 10+i, 2, "orders", "postgres", 5+i, 1))
	}
	spans = append(spans, hop(1, 2, 1, "gateway", "orders", 2, 200), hop(1, 1, 0, "", "gateway", 0, 210))
	recordFlush(st, spans...)
	if got := st.Traces(trace.Query{}); len(got) != 1 || got[0].Root != "gateway" || got[0].Spans != 102 {
		t.Errorf("Traces = %+v, want root gateway with 102 spans", got)
	}
}

func TestStoreEvictsWholeOldestTraces(t *testing.T) {
	st := openStore(t, "", store.Options{MaxSpans: 10})
	chain := func(n int) []*trace.Span { // 3 spans starting at 100n ms, innermost first
		return []*trace.Span{
			hop(n, n*10+3, n*10+2, "orders", "payments", n*100+2, 5),
			hop(n, n*10+2, n*10+1, "gateway", "orders", n*100+1, 10),
			hop(n, n*10+1, 0, "", "gateway", n*100, 20),
		}
	}
	// Trace 2 arrives after trace 3 but starts before it: eviction goes by
	// start, not by arrival.
	for _, n := range []int{1, 3, 2, 4, 5} {
		recordFlush(st, chain(n)...)
	}
	stats := st.Stats()
	if stats.Spans > 10 || stats.Spans != 3*stats.Traces || stats.Evicted != 2 {
		t.Errorf("stats = %+v, want at most 10 spans in whole traces, 2 evicted", stats)
	}
	got := summaryIDs(st.Traces(trace.Query{}))
	if want := []trace.TraceID{traceN(5), traceN(4), traceN(3)}; !slices.Equal(got, want) {
		t.Errorf("traces after eviction = %v, want %v", got, want)
	}
	// A straggler of an evicted trace is discarded, not resurrected.
	recordFlush(st, hop(1, 19, 11, "gateway", "audit", 150, 1))
	if st.Trace(traceN(1)) != nil || st.Stats().Late != 1 {
		t.Errorf("late span of an evicted trace: stats %+v", st.Stats())
	}
}

func TestStoreLateRootBehindWatermark(t *testing.T) {
	st := openStore(t, "", store.Options{MaxSpans: 3})
	recordFlush(st,
		hop(1, 11, 10, "gateway", "orders", 100, 10),
		hop(2, 21, 20, "gateway", "orders", 200, 10), // trace 2's root (at 50ms) comes later
		hop(3, 31, 0, "", "gateway", 300, 10),
		hop(4, 41, 0, "", "gateway", 400, 10), // evicts trace 1: the watermark is at 100ms
	)
	if st.Trace(traceN(1)) == nil && st.Trace(traceN(2)) == nil {
		t.Fatal("only trace 1 should be evicted")
	}
	// Trace 2's root moves its start behind the watermark: the store had
	// evicted everything that old, so trace 2 goes too (and a replay of the
	// log agrees).
	recordFlush(st, hop(2, 20, 0, "", "gateway", 50, 200))
	if st.Trace(traceN(2)) != nil {
		t.Error("trace 2 should be evicted once it starts behind the watermark")
	}
	// The root of the evicted trace 1 is discarded.
	recordFlush(st, hop(1, 10, 0, "", "gateway", 90, 30))
	if st.Trace(traceN(1)) != nil || st.Stats().Late != 1 {
		t.Errorf("a late root resurrected an evicted trace: %+v", st.Stats())
	}
}

func TestStorePersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	st, err := store.Open(dir, store.Options{SegmentSpans: 7})
	if err != nil {
		t.Fatal(err)
	}
	var all []*trace.Span
	for i := range 20 {
		all = append(all, typicalTrace(r, epoch.Add(time.Duration(i)*time.Second))...)
	}
	// And a hop with every rarely set field, and a header value too long
	// to share.
	odd := typicalHop(r, trace.NewTraceID(r), trace.SpanID{}, "", "gateway", epoch.Add(time.Minute))
	odd.Error, odd.Faults, odd.ReqBody, odd.RespBody = "connection reset by gateway", []string{"latency 300ms", "abort 503"}, "req", "resp"
	odd.Inferred, odd.Candidates, odd.GRPCStatus = true, 2, 14
	odd.Query = "region=EU&page=2"
	all[1].Query = "q=" + strings.Repeat("x", 300) // too long to share
	odd.RespHeaders = append(odd.RespHeaders, trace.Header{Name: "X-Long", Value: strings.Repeat("v", 300)})
	all = append(all, odd)
	recordFlush(st, all...)
	wantSums := st.Traces(trace.Query{})
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st2 := openStore(t, dir, store.Options{SegmentSpans: 7})
	if got := st2.Traces(trace.Query{}); !reflect.DeepEqual(got, wantSums) {
		t.Fatalf("after restart:\n got %+v\nwant %+v", got, wantSums)
	}
	for _, s := range all {
		got := st2.Trace(s.TraceID)
		i := slices.IndexFunc(got, func(g *trace.Span) bool { return g.SpanID == s.SpanID })
		if i < 0 || !reflect.DeepEqual(got[i], asStored(s)) {
			t.Errorf("span %s after restart:\n got %+v\nwant %+v", s.SpanID, got[i], asStored(s))
		}
	}
	// The restarted store appends to a new segment; a second restart still
	// sees everything.
	more := typicalTrace(r, epoch.Add(time.Hour))
	recordFlush(st2, more...)
	st2.Close()
	st3 := openStore(t, dir, store.Options{})
	if n := st3.Stats().Spans; n != len(all)+len(more) {
		t.Errorf("after the second restart: %d spans, want %d", n, len(all)+len(more))
	}
}

func TestStoreReopenAppliesMaxSpans(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 10; n++ {
		recordFlush(st, hop(n, n*10+1, n*10, "gateway", "orders", n*100+1, 5), hop(n, n*10, 0, "", "gateway", n*100, 10))
	}
	st.Close()
	st2 := openStore(t, dir, store.Options{MaxSpans: 7})
	got := summaryIDs(st2.Traces(trace.Query{}))
	if want := []trace.TraceID{traceN(10), traceN(9), traceN(8)}; !slices.Equal(got, want) {
		t.Errorf("reopened with MaxSpans 7: traces %v, want %v", got, want)
	}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "spans-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStoreEvictionDeletesSegmentsAndReplays checks that disk use follows
// memory, and that the log replays to the state the store had, including
// evictions, late roots and stragglers.
func TestStoreEvictionDeletesSegmentsAndReplays(t *testing.T) {
	dir := t.TempDir()
	opts := store.Options{MaxSpans: 40, SegmentSpans: 10}
	st, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	var late []*trace.Span
	for n := 1; n <= 200; n++ {
		child := hop(n, n*10+2, n*10+1, "gateway", "orders", n*100+1, 5+r.IntN(50))
		root := hop(n, n*10+1, 0, "", "gateway", n*100, 60)
		if n%7 == 0 { // a root that arrives some traces later
			recordFlush(st, child)
			late = append(late, root)
			continue
		}
		recordFlush(st, child, root)
		if len(late) > 0 && n%5 == 0 {
			recordFlush(st, late[0])
			late = late[1:]
		}
	}
	wantSums := st.Traces(trace.Query{Limit: 1000})
	wantStats := st.Stats()
	if wantStats.Spans > 40 {
		t.Fatalf("holding %d spans, MaxSpans is 40", wantStats.Spans)
	}
	if n := len(segmentFiles(t, dir)); n > 8 {
		t.Errorf("%d segment files for at most 40 live spans in segments of 10", n)
	}
	st.Close()

	st2 := openStore(t, dir, opts)
	if got := st2.Traces(trace.Query{Limit: 1000}); !reflect.DeepEqual(got, wantSums) {
		t.Errorf("replayed state differs:\n got %v\nwant %v", summaryIDs(got), summaryIDs(wantSums))
	}
}

func TestStoreTornRecord(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(data []byte) []byte
		want    int // spans after reopening
	}{
		{"cut mid-record", func(b []byte) []byte { return b[:len(b)-7] }, 2},
		{"cut mid-header", func(b []byte) []byte { return append(b, 0x50, 0) }, 3},
		{"garbage tail", func(b []byte) []byte { return append(b, bytes.Repeat([]byte{0xff}, 40)...) }, 3},
		{"flipped byte", func(b []byte) []byte { b[len(b)-3] ^= 0x20; return b }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := store.Open(dir, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			recordFlush(st, hop(1, 1, 0, "", "gateway", 0, 10), hop(2, 2, 0, "", "gateway", 10, 10), hop(3, 3, 0, "", "gateway", 20, 10))
			st.Close()
			segs := segmentFiles(t, dir)
			last := segs[len(segs)-1]
			data, err := os.ReadFile(last)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(last, tc.corrupt(data), 0o644); err != nil {
				t.Fatal(err)
			}

			var logBuf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logBuf, nil))
			st2 := openStore(t, dir, store.Options{Logger: logger})
			if n := st2.Stats().Spans; n != tc.want {
				t.Errorf("reopened with %d spans, want %d", n, tc.want)
			}
			if !strings.Contains(logBuf.String(), "torn record") {
				t.Errorf("no warning logged; log: %q", logBuf.String())
			}
			// New spans go to a new segment and survive the next restart.
			recordFlush(st2, hop(4, 4, 0, "", "gateway", 30, 10))
			st2.Close()
			st3 := openStore(t, dir, store.Options{})
			if n := st3.Stats().Spans; n != tc.want+1 {
				t.Errorf("second reopen: %d spans, want %d", n, tc.want+1)
			}
		})
	}
}

func TestStoreSkipsForeignFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spans-00000001.log"), []byte("hello, not a span log"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, dir, store.Options{})
	recordFlush(st, hop(1, 1, 0, "", "gateway", 0, 10))
	if st.Stats().Spans != 1 {
		t.Error("store unusable next to a foreign file")
	}
	if _, err := os.Stat(filepath.Join(dir, "spans-00000001.log")); err != nil {
		t.Errorf("the foreign file must be left alone: %v", err)
	}
}

func TestStoreFlushWritesFile(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, store.Options{})
	recordFlush(st, hop(1, 1, 0, "", "gateway", 0, 10))
	// Without Close, the record is in the file after Flush.
	st2 := openStore(t, dir, store.Options{})
	if st2.Stats().Spans != 1 {
		t.Error("Flush did not write the span to the log")
	}
}

func TestStoreSubscribe(t *testing.T) {
	st, err := store.Open("", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := st.Subscribe()
	ch2, _ := st.Subscribe()
	s := hop(1, 1, 0, "", "gateway", 0, 10)
	recordFlush(st, s)
	if got := <-ch; got.SpanID != s.SpanID {
		t.Errorf("subscriber got %v", got.SpanID)
	}
	cancel()
	cancel() // idempotent
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
	// A subscriber that never reads misses spans; the store does not block.
	for i := range 300 {
		recordFlush(st, hop(2, 100+i, 0, "", "gateway", i, 1))
	}
	if st.Stats().SubscriberDrops == 0 {
		t.Error("a full subscriber channel should count drops")
	}
	st.Close()
	n := 0
	for range ch2 {
		n++
	}
	if n != 256 {
		t.Errorf("slow subscriber received %d spans, want the buffer's 256", n)
	}
	late, _ := st.Subscribe()
	if _, ok := <-late; ok {
		t.Error("Subscribe after Close: want a closed channel")
	}
}

func TestStoreClose(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Record(hop(1, 1, 0, "", "gateway", 0, 10))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Stats().Spans != 1 {
		t.Error("Close must index what was recorded before it")
	}
	if err := st.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	st.Record(hop(2, 2, 0, "", "gateway", 0, 10))
	st.Flush() // returns at once
	if st.Dropped() != 1 {
		t.Errorf("Dropped = %d after recording into a closed store, want 1", st.Dropped())
	}
}

func TestStoreConcurrent(t *testing.T) {
	st := openStore(t, t.TempDir(), store.Options{MaxSpans: 500, SegmentSpans: 100})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for i := range 200 {
				for _, s := range typicalTrace(r, epoch.Add(time.Duration(i)*time.Millisecond)) {
					st.Record(s)
				}
			}
		})
		wg.Go(func() {
			for range 200 {
				for _, s := range st.Traces(trace.Query{Service: "orders", Limit: 10}) {
					st.Trace(s.TraceID)
				}
			}
		})
	}
	wg.Wait()
	st.Flush()
	if stats := st.Stats(); stats.Spans == 0 || stats.Spans > 500 {
		t.Errorf("stats = %+v, want 1..500 spans", stats)
	}
}

func TestStoreReadOnly(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recordFlush(st, hop(1, 1, 0, "", "gateway", 0, 10), hop(2, 2, 0, "", "gateway", 10, 10))
	st.Close()
	// A torn tail stays as it is: a read-only store changes nothing.
	segs := segmentFiles(t, dir)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{9, 0, 0})
	f.Close()
	snapshot := func() map[string]string {
		m := map[string]string{}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			m[e.Name()] = string(b)
		}
		return m
	}
	before := snapshot()

	ro := openStore(t, dir, store.Options{ReadOnly: true, MaxSpans: 1})
	if got := summaryIDs(ro.Traces(trace.Query{})); !slices.Equal(got, []trace.TraceID{traceN(2)}) {
		t.Errorf("read-only store lists %v, want the newest trace (MaxSpans 1)", got)
	}
	recordFlush(ro, hop(3, 3, 0, "", "gateway", 20, 10))
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(); !reflect.DeepEqual(after, before) {
		t.Error("a read-only store changed its directory")
	}
	if _, err := store.Open(filepath.Join(dir, "missing"), store.Options{ReadOnly: true}); err == nil {
		t.Error("read-only Open of a missing directory: want an error")
	}
}

// Spans from NewSpan are reused once stored, with their text: what the
// store holds, and what a subscriber was handed, must not change when
// they are. A span made otherwise is left alone.
func TestStoreReusesOnlyPooledSpansAndKeepsItsOwnCopy(t *testing.T) {
	st := openStore(t, t.TempDir(), store.Options{})
	r := rand.New(rand.NewPCG(9, 10))
	text := func(s *trace.Span, v string) string { return s.Text([]byte(v)) }
	fill := func(s *trace.Span, callee string) *trace.Span {
		// Field by field, as the proxy does (a struct copy would also
		// copy the mark that the span is the pool's), the headers into
		// the span's own, maybe reused, slices, and the strings of the
		// request into the span's own, maybe reused, text.
		h := typicalHop(r, trace.NewTraceID(r), trace.SpanID{}, "gateway", callee, epoch)
		s.TraceID, s.SpanID, s.Caller, s.Callee, s.Protocol, s.Method = h.TraceID, h.SpanID, h.Caller, h.Callee, h.Protocol, h.Method
		s.Route = text(s, h.Route)
		s.Status, s.GRPCStatus, s.Start, s.Duration, s.TTFB = h.Status, h.GRPCStatus, h.Start, h.Duration, h.TTFB
		s.BytesIn, s.BytesOut, s.RequestID = h.BytesIn, h.BytesOut, text(s, h.RequestID)
		s.ReqHeaders, s.RespHeaders = s.ReqHeaders[:0], s.RespHeaders[:0]
		for _, x := range h.ReqHeaders {
			s.ReqHeaders = append(s.ReqHeaders, trace.Header{Name: text(s, x.Name), Value: text(s, x.Value)})
		}
		for _, x := range h.RespHeaders {
			s.RespHeaders = append(s.RespHeaders, trace.Header{Name: text(s, x.Name), Value: text(s, x.Value)})
		}
		return h
	}
	var want []*trace.Span
	record := func(callee string) {
		for range 200 {
			s := trace.NewSpan()
			want = append(want, asStored(fill(s, callee)))
			st.Record(s)
		}
		st.Flush()
	}
	record("orders")
	ch, cancel := st.Subscribe()
	record("payments") // reusing orders' spans; handed to the subscriber, so not reused after
	var handed []*trace.Span
	for range 200 {
		handed = append(handed, <-ch)
	}
	cancel()
	record("inventory")
	// Reuse whatever went back to the pool, and scribble on it.
	reused := 0
	for range 400 {
		s := trace.NewSpan()
		if cap(s.ReqHeaders) > 0 {
			reused++
		}
		fill(s, "scribble")
		for i := range s.ReqHeaders[:cap(s.ReqHeaders)] {
			s.ReqHeaders[:cap(s.ReqHeaders)][i] = trace.Header{Name: "X-Scribble", Value: "x"}
		}
	}
	if reused == 0 {
		t.Fatal("no span was reused: the test tests nothing")
	}
	for _, w := range want {
		got := st.Trace(w.TraceID)
		if len(got) != 1 || !reflect.DeepEqual(got[0], w) {
			t.Fatalf("trace %s after the pool reused spans:\n got %+v\nwant %+v", w.TraceID, got, w)
		}
	}
	for i, w := range want[200:400] {
		s := handed[i]
		if s.Callee != "payments" || s.TraceID != w.TraceID || !reflect.DeepEqual(s.ReqHeaders, w.ReqHeaders) {
			t.Fatalf("the subscriber's span changed: %+v, want %+v", s, w)
		}
	}

	mine := typicalHop(r, trace.NewTraceID(r), trace.SpanID{}, "", "gateway", epoch)
	before := *mine
	st.Record(mine)
	st.Flush()
	if !reflect.DeepEqual(*mine, before) {
		t.Fatalf("a span not from NewSpan changed once recorded: %+v", *mine)
	}
}

// A full store reuses what it evicts. A reader's copy of an evicted trace
// must not change, a trace stored in reused memory must read back exactly
// as recorded (no header of the span that was there before), and steady
// state must not allocate a stored span, a trace entry or a header slice
// per hop.
func TestFullStoreReusesEvictedSpans(t *testing.T) {
	const max = 500
	st := openStore(t, t.TempDir(), store.Options{MaxSpans: max})
	r := rand.New(rand.NewPCG(19, 20))
	batch := func(n int, from time.Time, headers int) []*trace.Span {
		var spans []*trace.Span
		for i := range n {
			s := typicalHop(r, trace.NewTraceID(r), trace.SpanID{}, "gateway", "orders", from.Add(time.Duration(i)*time.Millisecond))
			if headers < len(s.ReqHeaders) {
				// Keep X-Request-Id, the last: a per-request value, stored
				// in a slab of the span's own.
				s.ReqHeaders = append(s.ReqHeaders[:headers:headers], s.ReqHeaders[len(s.ReqHeaders)-1])
			}
			s.RespHeaders = s.RespHeaders[:min(headers, len(s.RespHeaders))]
			spans = append(spans, s)
		}
		return spans
	}
	first := batch(max, epoch, 8)
	recordFlush(st, first...)
	held := st.Trace(first[0].TraceID)
	want := asStored(first[0])
	if len(held) != 1 || !reflect.DeepEqual(held[0], want) {
		t.Fatalf("before eviction: got %+v, want %+v", held, want)
	}

	// Fewer headers, so that a leftover of an evicted span would show.
	second := batch(4*max, epoch.Add(time.Hour), 3)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	recordFlush(st, second...)
	runtime.ReadMemStats(&after)

	if got := st.Trace(first[0].TraceID); got != nil {
		t.Fatalf("the first trace is still stored: eviction did not happen")
	}
	if !reflect.DeepEqual(held[0], want) {
		t.Fatalf("a reader's copy changed after its trace was evicted:\n got %+v\nwant %+v", held[0], want)
	}
	for _, s := range second[len(second)-max:] {
		got := st.Trace(s.TraceID)
		if len(got) != 1 || !reflect.DeepEqual(got[0], asStored(s)) {
			t.Fatalf("a span stored in reused memory:\n got %+v\nwant %+v", got, asStored(s))
		}
	}
	// What remains per span: its share of the block its per-request values
	// are cut from, and whatever a new interned value, the log and Flush
	// need now and then. Without reuse it is 5: the stored span, its
	// header slice and slab (and the slab's box), and the trace entry,
	// besides a string of its own when each span had one.
	per := float64(after.Mallocs-before.Mallocs) / float64(len(second))
	t.Logf("%.2f allocations per span", per)
	if per > 0.5 {
		t.Errorf("%.2f allocations per span in a full store, want at most 0.5", per)
	}
}

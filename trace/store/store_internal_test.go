package store

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/devstack/devstack/trace"
)

func TestStoreRecordDropsWhenFull(t *testing.T) {
	st, err := Open("", Options{Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Hold the index so the background goroutine blocks on its first span
	// and the buffer fills up behind it.
	st.mu.RLock()
	for i := range 10 {
		st.Record(&trace.Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{byte(i + 1)}, Start: time.Unix(1, 0)})
	}
	dropped := st.Dropped()
	st.mu.RUnlock()
	st.Flush()
	if dropped < 5 {
		t.Errorf("Dropped = %d, want at least 5 of 10 with a buffer of 4", dropped)
	}
	if got := uint64(st.Stats().Spans) + st.Dropped(); got != 10 {
		t.Errorf("indexed + dropped = %d, want 10", got)
	}
}

func TestStoredSpanSize(t *testing.T) {
	// One size class: keep it there when adding fields.
	if n := unsafe.Sizeof(storedSpan{}); n > 208 {
		t.Errorf("storedSpan is %d bytes, want at most 208", n)
	}
}

// The index's invariants hold under spans arriving in any order, while
// whole oldest traces are evicted: the order is sorted by (start, id),
// holds each trace once with its current start, matches the map, counts
// spans right, and keeps no trace at or behind the watermark.
func TestIndexInvariantsUnderRandomArrival(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	x := newIndex(300)
	in := newInterner()
	for i := range 5000 {
		tid := trace.TraceID{byte(r.IntN(200)), byte(r.IntN(200)), 1}
		s := &trace.Span{TraceID: tid, SpanID: trace.SpanID{byte(i), byte(i >> 8), 1}, Start: time.Unix(0, int64(r.IntN(1_000_000))), Duration: time.Duration(r.IntN(1000))}
		tr, ok := x.accepts(tid, s.Start.UnixNano())
		if !ok {
			continue
		}
		x.add(tid, tr, in.compact(s, 0, nil))

		if !slices.IsSortedFunc(x.order, func(a, b ordered) int { return a.compare(b.t.key()) }) {
			t.Fatalf("after span %d: order not sorted", i)
		}
		spans := 0
		for _, o := range x.order {
			if o.start != o.t.start || x.traces.get(o.t.id) != o.t {
				t.Fatalf("after span %d: order entry %+v out of step with its trace", i, o)
			}
			if x.behindMark(o.t.key()) {
				t.Fatalf("after span %d: trace at or behind the watermark kept", i)
			}
			spans += len(o.t.spans)
		}
		if len(x.order) != x.traces.len() || spans != x.spans || spans > x.max {
			t.Fatalf("after span %d: %d ordered, %d traces, %d spans (counted %d, max %d)", i, len(x.order), x.traces.len(), spans, x.spans, x.max)
		}
	}
	if x.evicted == 0 {
		t.Fatal("nothing was evicted: the test did not reach the limit")
	}
}

// Strings cut from shared blocks keep their bytes, across block boundaries
// and for strings long enough to get an allocation of their own.
func TestInternerCutKeepsEveryString(t *testing.T) {
	in := newInterner()
	r := rand.New(rand.NewPCG(3, 4))
	var want, got []string
	for i := range 3000 {
		n := r.IntN(64)
		if i%100 == 0 {
			n = cutAlone + r.IntN(100)
		}
		b := make([]byte, n)
		for j := range b {
			b[j] = byte('a' + r.IntN(26))
		}
		want = append(want, string(b))
		got = append(got, in.clone(string(b)))
		clear(b) // the caller's bytes change: the copy must not
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("string %d reads %q, want %q", i, got[i], want[i])
		}
	}
}

// A panic inside the index (an invariant check) drops the span, and the
// store goes on answering queries: the lock the panic interrupted is
// released.
func TestStoreAnswersQueriesAfterAPanicInTheIndex(t *testing.T) {
	st, err := Open("", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Record(&trace.Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Start: time.Unix(1, 0)})
	st.Flush()
	// Break the index so that adding the next span panics under the lock.
	st.mu.Lock()
	st.idx.segLive = nil
	st.mu.Unlock()
	st.Record(&trace.Span{TraceID: trace.TraceID{2}, SpanID: trace.SpanID{2}, Start: time.Unix(2, 0)})
	st.Flush()
	done := make(chan []trace.Summary, 1)
	go func() { done <- st.Traces(trace.Query{}) }()
	select {
	case got := <-done:
		if len(got) == 0 || got[len(got)-1].TraceID != (trace.TraceID{1}) {
			t.Errorf("Traces after the panic = %v, want the first trace still there", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Traces still waiting for the index's lock 10s after a panic in the index")
	}
}

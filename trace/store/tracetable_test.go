package store

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/devstack/devstack/trace"
)

// The trace table against a Go map, under the store's pattern and under
// random churn, with ids that differ in their last bytes (a counter) as
// well as random ones: every entry it holds stays found, nothing else is,
// its count and slots agree, and the ids spread over the slots.
func TestTraceTableAgreesWithAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, ids := range []struct {
		name string
		make func(i int) trace.TraceID
	}{
		{"random", func(int) trace.TraceID { return trace.NewTraceID(r) }},
		{"counter", func(i int) trace.TraceID {
			var id trace.TraceID
			binary.BigEndian.PutUint32(id[12:], uint32(i+1))
			return id
		}},
	} {
		t.Run(ids.name, func(t *testing.T) {
			tb := newTraceTable()
			m := map[trace.TraceID]*traceEntry{}
			var live []*traceEntry
			check := func(step int) {
				for _, e := range live {
					if got := tb.get(e.id); got != e {
						t.Fatalf("step %d: trace %s lost (got %p, want %p)", step, e.id, got, e)
					}
				}
				used, run, longest := 0, 0, 0
				for i, h := range tb.hashes {
					if (h == 0) != (tb.slots[i] == nil) {
						t.Fatalf("step %d: slot %d has hash %x and entry %p", step, i, h, tb.slots[i])
					}
					if h != 0 {
						used++
						run++
						longest = max(longest, run)
					} else {
						run = 0
					}
				}
				// At most half full, runs of used slots stay short unless
				// the ids do not spread.
				if longest > 128 {
					t.Fatalf("step %d: a run of %d used slots in %d", step, longest, len(tb.hashes))
				}
				if used != len(m) || tb.len() != len(m) {
					t.Fatalf("step %d: %d slots used, len %d; want %d", step, used, tb.len(), len(m))
				}
			}
			next := 0
			for step := range 60000 {
				// Grow to a few thousand (the table doubles on the way), then
				// churn: random deletions, and runs of oldest-first ones.
				if len(live) < 3000 && (step < 6000 || r.IntN(2) == 0) {
					e := &traceEntry{id: ids.make(next)}
					next++
					if tb.get(e.id) != nil {
						t.Fatalf("step %d: trace %s found before it was added", step, e.id)
					}
					tb.put(e)
					m[e.id] = e
					live = append(live, e)
				} else {
					k := 0
					if r.IntN(3) == 0 {
						k = r.IntN(len(live))
					}
					e := live[k]
					tb.del(e)
					delete(m, e.id)
					live = append(live[:k], live[k+1:]...)
					if tb.get(e.id) != nil {
						t.Fatalf("step %d: deleted trace %s still found", step, e.id)
					}
				}
				if step%500 == 0 {
					check(step)
				}
			}
			check(-1)
		})
	}
}

// BenchmarkTraceTable is the store's pattern on a full store of 100k
// traces: evict the oldest trace, look the new one up (finding nothing),
// add it; against a Go map doing the same.
//
//	go test -run '^$' -bench TraceTable ./trace/store/
func BenchmarkTraceTable(b *testing.B) {
	const n = 100_000
	ring := make([]*traceEntry, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range ring {
		ring[i] = &traceEntry{id: trace.NewTraceID(r)}
	}
	b.Run("table", func(b *testing.B) {
		tb := newTraceTable()
		for _, e := range ring {
			tb.put(e)
		}
		i := 0
		for b.Loop() {
			e := ring[i%n]
			i++
			tb.del(e)
			e.id = trace.NewTraceID(r)
			if tb.get(e.id) != nil {
				b.Fatal("a new id was found")
			}
			tb.put(e)
		}
	})
	b.Run("map", func(b *testing.B) {
		m := map[trace.TraceID]*traceEntry{}
		for _, e := range ring {
			m[e.id] = e
		}
		i := 0
		for b.Loop() {
			e := ring[i%n]
			i++
			delete(m, e.id)
			e.id = trace.NewTraceID(r)
			if m[e.id] != nil {
				b.Fatal("a new id was found")
			}
			m[e.id] = e
		}
	})
}

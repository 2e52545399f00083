package store_test

import (
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

// bytesPerSpan records n typical hops (in traces of 5) and returns the heap
// growth per stored span after GC.
func bytesPerSpan(tb testing.TB, dir string, n int) float64 {
	tb.Helper()
	r := rand.New(rand.NewPCG(11, 12))
	var spans []*trace.Span
	for i := range n / 5 {
		spans = append(spans, typicalTrace(r, epoch.Add(time.Duration(i)*time.Millisecond))...)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	st, err := store.Open(dir, store.Options{MaxSpans: n})
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	recordFlush(st, spans...)
	// The recorded spans stay alive, so the growth is what the store keeps
	// of its own (it copies everything it keeps).
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(spans)
	if got := st.Stats().Spans; got != n {
		tb.Fatalf("store holds %d spans, want %d", got, n)
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkStoreMemory reports the heap a stored typical hop costs (8
// request and 6 response headers, no body), index and interning included.
func BenchmarkStoreMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		per = bytesPerSpan(b, b.TempDir(), 100_000)
	}
	b.ReportMetric(per, "B/span")
}

func TestStoreMemoryPerSpan(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 50k spans")
	}
	per := bytesPerSpan(t, t.TempDir(), 50_000)
	t.Logf("%.0f B/span", per)
	if per > 1024 {
		t.Errorf("%.0f B per stored span, budget 1024", per)
	}
}

// BenchmarkRecord is the proxy's cost per hop. The store drops what its
// goroutine can't keep up with; the cost of Record is the same either way.
func BenchmarkRecord(b *testing.B) {
	st := openStore(b, b.TempDir(), store.Options{})
	r := rand.New(rand.NewPCG(13, 14))
	spans := typicalTrace(r, epoch)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			st.Record(spans[i%len(spans)])
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				st.Record(spans[i%len(spans)])
			}
		})
	})
}

// BenchmarkStoreIngest is the background goroutine's throughput: index,
// intern and append to the log, for 100k fresh spans into a store that
// evicts half of them.
func BenchmarkStoreIngest(b *testing.B) {
	r := rand.New(rand.NewPCG(15, 16))
	var spans []*trace.Span
	for i := range 20_000 {
		spans = append(spans, typicalTrace(r, epoch.Add(time.Duration(i)*time.Millisecond))...)
	}
	b.ReportAllocs()
	for b.Loop() {
		st, err := store.Open(os.Getenv("INGEST_DIR"), store.Options{MaxSpans: 50_000})
		if err != nil {
			b.Fatal(err)
		}
		recordFlush(st, spans...)
		st.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

// BenchmarkStoreIngestProxyOrder ingests what the proxy records under
// load: one hop per trace, 32 requests in flight, so spans arrive in
// order of their end, a little out of order of their start.
func BenchmarkStoreIngestProxyOrder(b *testing.B) {
	r := rand.New(rand.NewPCG(17, 18))
	spans := make([]*trace.Span, 200_000)
	for i := range spans {
		spans[i] = typicalHop(r, trace.NewTraceID(r), trace.SpanID{}, "", "upstream", epoch.Add(time.Duration(i)*10*time.Microsecond))
	}
	for i := 0; i+32 <= len(spans); i += 32 {
		r.Shuffle(32, func(a, c int) { spans[i+a], spans[i+c] = spans[i+c], spans[i+a] })
	}
	b.ReportAllocs()
	for b.Loop() {
		st, err := store.Open("", store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		recordFlush(st, spans...)
		st.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

// BenchmarkOpen reloads a full log of 100k spans.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	fillShop(b, st, 20_000)
	st.Close()
	for b.Loop() {
		st, err := store.Open(dir, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		st.Close()
	}
}

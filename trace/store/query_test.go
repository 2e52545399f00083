package store_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

func status(n int) trace.StatusRange { return trace.StatusRange{Min: n, Max: n} }

func statusRange(s string) trace.StatusRange {
	r, err := trace.ParseStatusRange(s)
	if err != nil {
		panic(err)
	}
	return r
}

func TestTracesQuery(t *testing.T) {
	st := openStore(t, "", store.Options{})
	// 1: gateway → orders → payments, 503 from payments (at 100ms, 80ms)
	// 2: gateway → orders, ok (200ms, 30ms)
	// 3: gateway → search, transport error (300ms, 5ms)
	// 4: admin → users, 404 (400ms, 500ms)
	// 5: gateway → orders gRPC, grpc status 14 (500ms, 40ms)
	pay := hop(1, 12, 11, "orders", "payments", 120, 50)
	pay.Status = 503
	search := hop(3, 31, 0, "gateway", "search", 300, 5)
	search.Status, search.Error = 0, "connection refused"
	users := hop(4, 41, 0, "admin", "users", 400, 500)
	users.Status, users.Route = 404, "/users/42"
	grpc := hop(5, 51, 0, "gateway", "orders", 500, 40)
	grpc.Protocol, grpc.Route, grpc.GRPCStatus = "grpc", "/orders.v1.Orders/Get", 14
	ord2 := hop(2, 21, 20, "gateway", "orders", 210, 10)
	ord2.Query = "page=2&region=EU"
	recordFlush(st,
		pay, hop(1, 11, 10, "gateway", "orders", 110, 60), hop(1, 10, 0, "", "gateway", 100, 80),
		ord2, hop(2, 20, 0, "", "gateway", 200, 30),
		search, users, grpc,
	)
	for _, tc := range []struct {
		name string
		q    trace.Query
		want []int
	}{
		{"all newest first", trace.Query{}, []int{5, 4, 3, 2, 1}},
		{"limit", trace.Query{Limit: 2}, []int{5, 4}},
		{"service as callee", trace.Query{Service: "payments"}, []int{1}},
		{"service as caller or callee", trace.Query{Service: "orders"}, []int{5, 2, 1}},
		{"service as caller only", trace.Query{Service: "admin"}, []int{4}},
		{"unknown service", trace.Query{Service: "nope"}, nil},
		{"status of any span", trace.Query{Status: status(503)}, []int{1}},
		{"status 200", trace.Query{Status: status(200)}, []int{5, 2, 1}},
		{"status class 4xx", trace.Query{Status: statusRange("4xx")}, []int{4}},
		{"status class 5xx", trace.Query{Status: statusRange("5xx")}, []int{1}},
		{"status range 500-502 misses a 503", trace.Query{Status: statusRange("500-502")}, nil},
		{"status range 404-503", trace.Query{Status: statusRange("404-503")}, []int{4, 1}},
		{"id prefix", trace.Query{IDPrefix: traceN(3).String()}, []int{3}},
		{"id prefix of every trace", trace.Query{IDPrefix: "ab00"}, []int{5, 4, 3, 2, 1}},
		{"id prefix of none", trace.Query{IDPrefix: "ff"}, nil},
		{"query of any span", trace.Query{QueryHas: "region=EU"}, []int{2}},
		{"query and service on the same span", trace.Query{QueryHas: "region=EU", Service: "orders"}, []int{2}},
		{"query and service on different spans", trace.Query{QueryHas: "region=EU", Service: "payments"}, nil},
		{"errors", trace.Query{Errors: true}, []int{5, 3, 1}},
		{"min duration", trace.Query{MinDuration: 80 * time.Millisecond}, []int{4, 1}},
		{"since", trace.Query{Since: epoch.Add(300 * time.Millisecond)}, []int{5, 4, 3}},
		{"route prefix", trace.Query{Route: "/users/"}, []int{4}},
		{"grpc route prefix", trace.Query{Route: "/orders.v1."}, []int{5}},
		{"one span must match all span fields", trace.Query{Service: "gateway", Status: status(503)}, nil},
		{"service and status on the same span", trace.Query{Service: "payments", Status: status(503)}, []int{1}},
		{"errors and service", trace.Query{Errors: true, Service: "orders"}, []int{5, 1}},
		{"since and limit", trace.Query{Since: epoch.Add(150 * time.Millisecond), Limit: 10, Service: "orders"}, []int{5, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []trace.TraceID
			for _, n := range tc.want {
				want = append(want, traceN(n))
			}
			if got := summaryIDs(st.Traces(tc.q)); !slices.Equal(got, want) {
				t.Errorf("Traces(%+v) = %v, want traces %v", tc.q, got, tc.want)
			}
		})
	}
	if got := st.Traces(trace.Query{Errors: true}); got[0].Errors != 1 || got[2].Root != "gateway" || got[2].Status != 200 {
		t.Errorf("summaries: %+v", got)
	}
}

// fill records n traces of 5 hops each, one started every 10ms.
func fillShop(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	var spans []*trace.Span
	for i := range n {
		tr := typicalTrace(r, epoch.Add(time.Duration(i)*10*time.Millisecond))
		if i%50 == 0 {
			tr[3].Status = 503
		}
		spans = append(spans, tr...)
	}
	recordFlush(st, spans...)
	if got := st.Stats().Spans; got != 5*n {
		tb.Fatalf("store holds %d spans, want %d", got, 5*n)
	}
}

// BenchmarkTracesQuery lists traces from a full store: 100k spans in 20k
// traces. The budget is 50ms per query.
func BenchmarkTracesQuery(b *testing.B) {
	st := openStore(b, "", store.Options{})
	fillShop(b, st, 20_000)
	for _, bc := range []struct {
		name string
		q    trace.Query
	}{
		{"newest_100", trace.Query{}},
		{"service", trace.Query{Service: "payments"}},
		{"errors", trace.Query{Errors: true}},
		{"status_503", trace.Query{Status: status(503)}},
		{"route_prefix", trace.Query{Route: "/api/v1/payments"}},
		{"since_1min", trace.Query{Since: epoch.Add(200*time.Second - time.Minute), Limit: 10_000}},
		// Nothing matches: every span is looked at.
		{"no_match_full_scan", trace.Query{Service: "nope"}},
		{"min_duration_no_match", trace.Query{MinDuration: time.Hour}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				st.Traces(bc.q)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/op")
		})
	}
	b.Run("trace", func(b *testing.B) {
		sums := st.Traces(trace.Query{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			st.Trace(sums[i%len(sums)].TraceID)
		}
	})
}

func TestTracesQueryFullStoreFast(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing check; run without -race and -short")
	}
	st := openStore(t, "", store.Options{})
	fillShop(t, st, 20_000)
	for _, q := range []trace.Query{{}, {Service: "nope"}, {Errors: true, Limit: 10_000}} {
		start := time.Now()
		st.Traces(q)
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Errorf("Traces(%+v) took %v with 100k spans, budget 50ms", q, d)
		}
	}
}

func ExampleStore() {
	st, err := store.Open("", store.Options{}) // "" keeps spans in memory only
	if err != nil {
		panic(err)
	}
	defer st.Close()
	id := trace.TraceID{1}
	st.Record(&trace.Span{TraceID: id, SpanID: trace.SpanID{1}, Callee: "gateway", Method: "GET", Route: "/",
		Status: 200, Start: time.Unix(0, 0), Duration: time.Millisecond})
	st.Flush()
	for _, s := range st.Traces(trace.Query{Service: "gateway"}) {
		fmt.Println(s.Root, s.Method, s.Route, s.Status, s.Spans)
	}
	// Output: gateway GET / 200 1
}

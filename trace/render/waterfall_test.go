package render_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/render"
	"github.com/devstack/devstack/trace/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/waterfall")

// chainTrace is client → gateway → orders → payments → ledger → postgres,
// with a fast side call orders → inventory and one slow hop, payments →
// ledger.
func chainTrace() []*trace.Span {
	gw := hop(1, 1, 0, "", "gateway", 0, 420)
	gw.Method, gw.Route = "POST", "/checkout"
	orders := hop(1, 2, 1, "gateway", "orders", 8, 405)
	orders.Method, orders.Route = "POST", "/orders"
	inv := hop(1, 3, 2, "orders", "inventory", 15, 22)
	inv.Route, inv.Query = "/inventory/sku-42", "region=EU"
	pay := hop(1, 4, 2, "orders", "payments", 40, 360)
	pay.Method, pay.Route = "POST", "/payments/authorize"
	ledger := hop(1, 5, 4, "payments", "ledger", 52, 330)
	ledger.Method, ledger.Route = "POST", "/ledger/entries"
	db := hop(1, 6, 5, "ledger", "postgres", 370, 4)
	db.Protocol, db.Method, db.Route, db.Status = "tcp", "", "", 0
	return []*trace.Span{gw, orders, inv, pay, ledger, db}
}

func errorTrace() []*trace.Span {
	gw := hop(2, 1, 0, "", "gateway", 0, 60)
	orders := hop(2, 2, 1, "gateway", "orders", 5, 50)
	orders.Status = 503
	pay := hop(2, 3, 2, "orders", "payments", 10, 1)
	pay.Status, pay.Error = 0, "connection refused"
	pay.Route = "/payments/authorize"
	return []*trace.Span{gw, orders, pay}
}

func inferredTrace() []*trace.Span {
	gw := hop(3, 1, 0, "", "gateway", 0, 100)
	orders := hop(3, 2, 1, "gateway", "orders", 5, 90)
	pay := hop(3, 3, 2, "orders", "payments", 20, 40)
	pay.Inferred = true
	mail := hop(3, 4, 2, "orders", "mailer", 70, 15)
	mail.Inferred = true
	return []*trace.Span{gw, orders, pay, mail}
}

func faultTrace() []*trace.Span {
	gw := hop(4, 1, 0, "", "gateway", 0, 340)
	orders := hop(4, 2, 1, "gateway", "orders", 5, 330)
	orders.Faults = []string{"latency 300ms"}
	inv := hop(4, 3, 2, "orders", "inventory", 310, 20)
	inv.Faults = []string{"abort 503"}
	inv.Status = 503
	return []*trace.Span{gw, orders, inv}
}

func tcpTrace() []*trace.Span {
	orders := hop(5, 1, 0, "gateway", "orders", 0, 30)
	pg := hop(5, 2, 1, "orders", "postgres", 2, 3)
	pg.Protocol, pg.Method, pg.Route, pg.Status = "tcp", "", "", 0
	redis := hop(5, 3, 1, "orders", "redis", 6, 0)
	redis.Protocol, redis.Method, redis.Route, redis.Status = "tcp", "", "", 0
	redis.Duration = 40_000 // 40µs: narrower than a column
	pg2 := hop(5, 4, 1, "orders", "postgres", 12, 15)
	pg2.Protocol, pg2.Method, pg2.Route, pg2.Status = "tcp", "", "", 0
	pg2.Error = "reset by peer"
	return []*trace.Span{orders, pg, redis, pg2}
}

func orphanTrace() []*trace.Span {
	// The gateway's hop was evicted or never recorded: orders' parent is
	// missing.
	orders := hop(6, 2, 1, "gateway", "orders", 5, 50)
	pay := hop(6, 3, 2, "orders", "payments", 10, 30)
	late := hop(6, 4, 9, "worker", "mailer", 70, 10)
	return []*trace.Span{pay, orders, late} // any order
}

func shopTrace() []*trace.Span {
	spans := chainTrace()
	spans[2].Status = 500
	spans[3].Inferred = true
	spans[4].Faults = []string{"latency 300ms"}
	return spans
}

func TestRenderWaterfallGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spans []*trace.Span
		opts  render.WaterfallOptions
	}{
		{"chain", chainTrace(), render.WaterfallOptions{}},
		{"chain_narrow", chainTrace(), render.WaterfallOptions{Width: 60}},
		{"error", errorTrace(), render.WaterfallOptions{}},
		{"inferred", inferredTrace(), render.WaterfallOptions{}},
		{"fault", faultTrace(), render.WaterfallOptions{}},
		{"tcp", tcpTrace(), render.WaterfallOptions{Width: 80}},
		{"orphan", orphanTrace(), render.WaterfallOptions{}},
		{"shop_color", shopTrace(), render.WaterfallOptions{Color: true}},
		{"empty", nil, render.WaterfallOptions{}},
		{"deep_tree", deepTree(), render.WaterfallOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := render.Waterfall(&buf, tc.spans, tc.opts); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "waterfall", tc.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestRenderWaterfallGolden -update to create it)", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("waterfall differs from %s (rerun with -update if intended):\n--- got\n%s--- want\n%s", golden, got, want)
			}
			if !tc.opts.Color {
				width := tc.opts.Width
				if width == 0 {
					width = 100
				}
				for line := range strings.SplitSeq(strings.TrimSuffix(buf.String(), "\n"), "\n") {
					if n := len([]rune(line)); n > width {
						t.Errorf("line is %d columns, wider than %d: %q", n, width, line)
					}
				}
			}
		})
	}
}

func TestCriticalPath(t *testing.T) {
	short := func(ids []trace.SpanID) []string {
		var out []string
		for _, id := range ids {
			out = append(out, id.String()[12:])
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		spans []*trace.Span
		want  []string
	}{
		// orders calls inventory, then payments: both are waited for.
		{"sequential calls are all on it", chainTrace(), []string{"0001", "0002", "0003", "0004", "0005", "0006"}},
		{"single span", chainTrace()[:1], []string{"0001"}},
		{"input order does not matter", slicesBackward(chainTrace()), []string{"0001", "0002", "0003", "0004", "0005", "0006"}},
		{"a slow call early in a sequence", slowThenFast(), []string{"0001", "0002", "0003"}},
		{"of parallel calls, the one waited for", parallelTrace(), []string{"0001", "0003", "0005"}},
		{"nested: the blocking chain inside each hop", nestedTrace(), []string{"0001", "0002", "0004", "0005"}},
		{"starts at the earliest top-level span", orphanTrace(), []string{"0002", "0003"}},
		{"empty", nil, nil},
		{"parent cycle", []*trace.Span{hop(7, 1, 2, "a", "b", 0, 10), hop(7, 2, 1, "b", "c", 1, 5)}, []string{"0001", "0002"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := short(render.CriticalPath(tc.spans)); !slices.Equal(got, tc.want) {
				t.Errorf("CriticalPath = %v, want %v", got, tc.want)
			}
		})
	}
}

// deepTree has a hop two levels down with a sibling after it and a call
// of its own: the tree's rail must run past that call to the sibling.
func deepTree() []*trace.Span {
	return []*trace.Span{
		hop(12, 1, 0, "", "gateway", 0, 100),
		hop(12, 2, 1, "gateway", "orders", 5, 90),
		hop(12, 3, 2, "orders", "inventory", 10, 30),
		hop(12, 4, 3, "inventory", "db", 15, 10),
		hop(12, 5, 2, "orders", "payments", 45, 40),
	}
}

// slowThenFast: a hop calls a service for 800 ms, then another for
// 0.2 ms. "The child that ends last" marked only the fast one.
func slowThenFast() []*trace.Span {
	root := hop(8, 1, 0, "", "orders", 0, 1000)
	slow := hop(8, 2, 1, "orders", "payments", 10, 800)
	fast := hop(8, 3, 1, "orders", "audit", 900, 0)
	fast.Duration = 200 * time.Microsecond
	return []*trace.Span{root, slow, fast}
}

// parallelTrace: the root calls three services at once and waits for
// all; inventory (span 3) ends last, and inside it, span 5 ends last of
// two parallel calls.
func parallelTrace() []*trace.Span {
	return []*trace.Span{
		hop(9, 1, 0, "", "gateway", 0, 100),
		hop(9, 2, 1, "gateway", "prices", 5, 40),
		hop(9, 3, 1, "gateway", "inventory", 5, 90),
		hop(9, 4, 3, "inventory", "db", 10, 30),
		hop(9, 5, 3, "inventory", "cache", 10, 80),
		hop(9, 6, 1, "gateway", "ads", 5, 20),
	}
}

// nestedTrace: the root calls orders (which calls a slow db, then a fast
// one that ends after it), then returns; a last call, started before
// orders ended and still running at the end of the root, is outside.
func nestedTrace() []*trace.Span {
	return []*trace.Span{
		hop(10, 1, 0, "", "gateway", 0, 100),
		hop(10, 2, 1, "gateway", "orders", 10, 80),
		hop(10, 3, 1, "gateway", "metrics", 85, 50), // fire and forget: ends after the root
		hop(10, 4, 2, "orders", "db", 15, 60),
		hop(10, 5, 2, "orders", "cache", 76, 10),
	}
}

// TestSelfTimeAndSummary checks the numbers the waterfall's summary and
// self column show, and where an error is said to start.
func TestSelfTimeAndSummary(t *testing.T) {
	var buf bytes.Buffer
	if err := render.Waterfall(&buf, slowThenFast(), render.WaterfallOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	// The slow call is named, with its share; the root's own time is
	// 1000 - 800 - 0.2 ms.
	if !strings.Contains(out, "time: 80% in orders → payments GET /payments (800ms self)") {
		t.Errorf("summary does not name the slow call:\n%s", out)
	}
	if !strings.Contains(out, "1.00s   200ms") {
		t.Errorf("root's self time is not 200ms:\n%s", out)
	}

	// A 502 / 502 / 502 / 500 chain: the error started at the 500.
	chain := []*trace.Span{
		hop(11, 1, 0, "", "edge", 0, 50),
		hop(11, 2, 1, "edge", "gateway", 2, 45),
		hop(11, 3, 2, "gateway", "orders", 4, 40),
		hop(11, 4, 3, "orders", "payments", 6, 30),
	}
	for i, st := range []int{502, 502, 502, 500} {
		chain[i].Status = st
	}
	buf.Reset()
	if err := render.Waterfall(&buf, chain, render.WaterfallOptions{}); err != nil {
		t.Fatal(err)
	}
	if line := strings.Split(buf.String(), "\n")[1]; !strings.HasSuffix(line, " · error started at orders → payments (HTTP 500)") || !strings.HasPrefix(line, "time: ") {
		t.Errorf("error origin line: %q", line)
	}
	// The same chain, with the edge answering 200: it swallowed it.
	chain[0].Status = 200
	buf.Reset()
	render.Waterfall(&buf, chain, render.WaterfallOptions{})
	if line := strings.Split(buf.String(), "\n")[2]; line != "error started at orders → payments GET /payments (HTTP 500), swallowed by edge (answered 200)" {
		t.Errorf("swallowed error line: %q", line)
	}
	// A failing hop with a failing callee is not the origin, however
	// deep the other branch.
	errs := errorTrace() // gateway 200 → orders 503 → payments refused
	buf.Reset()
	render.Waterfall(&buf, errs, render.WaterfallOptions{})
	if !strings.Contains(buf.String(), "error started at orders → payments") {
		t.Errorf("origin of a refused call:\n%s", buf.String())
	}
}

// TestWaterfallMarksClientErrorsAndGuesses: a 4xx is a client error,
// not a failure, and an ambiguous inferred link is never drawn as a
// plain (or a certain inferred) child.
func TestWaterfallMarksClientErrorsAndGuesses(t *testing.T) {
	spans := inferredTrace()
	spans[2].Candidates = 1 // certain
	spans[3].Candidates = 5 // a guess among five
	spans[1].Status = 404
	var buf bytes.Buffer
	if err := render.Waterfall(&buf, spans, render.WaterfallOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	find := func(sub string) string {
		for _, l := range lines[3:] { // the rows, after the header, summary and axis
			if strings.Contains(l, sub) {
				return l
			}
		}
		t.Fatalf("no line with %q:\n%s", sub, out)
		return ""
	}
	if l := find("gateway → orders"); !strings.HasPrefix(l, "*x") {
		t.Errorf("a 404 is marked %q, want x (client error)", l[:2])
	}
	if strings.Contains(out, "failed") || !strings.Contains(lines[0], " · 1 client error · ") {
		t.Errorf("a 404 counted as failed, or not as a client error:\n%s", out)
	}
	if l := find("orders → payments"); !strings.Contains(l, "├~ orders → payments") {
		t.Errorf("a certain inferred link: %q", l)
	}
	if l := find("orders → mailer"); !strings.Contains(l, "└? (1 of 5?) orders → mailer") {
		t.Errorf("a guessed link: %q", l)
	}
	if !strings.HasSuffix(lines[0], " · 1 guessed link") || !strings.Contains(out, "? guessed: orders called mailer while serving 5 requests") {
		t.Errorf("the guess is not explained:\n%s", out)
	}
	if !strings.Contains(out, "x client error") {
		t.Errorf("no client error footnote:\n%s", out)
	}
}

func TestRenderWaterfallFromStore(t *testing.T) {
	// The store's Trace output renders as the input would.
	st := openStore(t, "", store.Options{})
	recordFlush(st, shopTrace()...)
	var a, b bytes.Buffer
	if err := render.Waterfall(&a, st.Trace(traceN(1)), render.WaterfallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := render.Waterfall(&b, shopTrace(), render.WaterfallOptions{}); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("store round trip changed the waterfall:\n%s\nvs\n%s", a.String(), b.String())
	}
}

func TestViewsJSON(t *testing.T) {
	spans := slowThenFast()
	spans[2].Status = 500
	spans[1].Inferred, spans[1].Candidates = true, 3
	b, err := json.Marshal(render.Views(spans))
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0]["callee"] != "orders" {
		t.Fatalf("views: %s", b)
	}
	// The span's own fields are there, and the trace's view of it.
	if got[0]["self_time"] != float64(200*time.Millisecond-200*time.Microsecond) || got[0]["critical_path"] != true {
		t.Errorf("root view: %v", got[0])
	}
	if got[1]["link"] != "guessed" || got[1]["candidates"] != float64(3) || got[1]["self_time"] != float64(800*time.Millisecond) {
		t.Errorf("guessed link view: %v", got[1])
	}
	if got[2]["error_origin"] != true || got[1]["error_origin"] != nil {
		t.Errorf("error origin: %v / %v", got[1], got[2])
	}
}

// A long query gives way before the route does.
func TestWaterfallLabelKeepsTheRoute(t *testing.T) {
	sp := hop(13, 1, 0, "", "gateway", 0, 10)
	sp.Route, sp.Query = "/checkout/cart", "item=sku-1&qty=2&region=EU&coupon=SPRING&ref=newsletter-2026-12"
	var buf bytes.Buffer
	render.Waterfall(&buf, []*trace.Span{sp}, render.WaterfallOptions{Width: 120})
	row := strings.Split(buf.String(), "\n")[3]
	if !strings.Contains(row, "client → gateway GET /checkout/cart?item") || strings.Contains(row, "newsletter") {
		t.Errorf("row: %q", row)
	}
}

package render_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
		{"follows the child that ends last", chainTrace(), []string{"0001", "0002", "0004", "0005", "0006"}},
		{"single span", chainTrace()[:1], []string{"0001"}},
		{"input order does not matter", slicesBackward(chainTrace()), []string{"0001", "0002", "0004", "0005", "0006"}},
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

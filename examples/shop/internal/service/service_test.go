package service

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/examples/shop/internal/tracectx"
)

// hit is one request a service received, as seen from outside its handler.
type hit struct {
	header   http.Header
	duration time.Duration
}

// stack is the five services wired together on 127.0.0.1:0 listeners.
type stack struct {
	gateway *httptest.Server
	mu      sync.Mutex
	hits    map[string][]hit
}

// stackOptions tweak startStack.
type stackOptions struct {
	ordersClient *http.Client // default: New's default
	inventoryURL string       // default: the in-process inventory
}

func startStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	st := &stack{hits: map[string][]hit{}}
	start := func(cfg Config) string {
		t.Helper()
		h, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%s): %v", cfg.Name, err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			began := time.Now()
			h.ServeHTTP(w, r)
			st.mu.Lock()
			defer st.mu.Unlock()
			st.hits[cfg.Name] = append(st.hits[cfg.Name], hit{r.Header.Clone(), time.Since(began)})
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	fraud := start(Config{Name: Fraud})
	payments := start(Config{Name: Payments, FraudURL: fraud})
	inventory := start(Config{Name: Inventory})
	if opts.inventoryURL != "" {
		inventory = opts.inventoryURL
	}
	orders := start(Config{Name: Orders, InventoryURL: inventory, PaymentsURL: payments, Client: opts.ordersClient})
	st.gateway = httptest.NewServer(must(New(Config{Name: Gateway, OrdersURL: orders})))
	t.Cleanup(st.gateway.Close)
	return st
}

func must(h http.Handler, err error) http.Handler {
	if err != nil {
		panic(err)
	}
	return h
}

// only returns the single request service received.
func (st *stack) only(t *testing.T, service string) hit {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := len(st.hits[service]); n != 1 {
		t.Fatalf("%s got %d requests, want 1", service, n)
	}
	return st.hits[service][0]
}

func (st *stack) count(service string) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.hits[service])
}

// get sends GET path to the gateway with header h and decodes the JSON answer into out.
func (st *stack) get(t *testing.T, path string, h http.Header, out any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, st.gateway.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: decoding answer: %v", path, err)
	}
	return resp.StatusCode
}

type checkout struct {
	Service string
	TraceID string `json:"trace_id"`
	Order   struct {
		Service    string
		TraceID    string `json:"trace_id"`
		ID         string
		Qty        int
		TotalCents int `json:"total_cents"`
		Inventory  struct {
			Service  string
			TraceID  string `json:"trace_id"`
			Reserved int
		}
		Payment struct {
			Service     string
			TraceID     string `json:"trace_id"`
			AmountCents int    `json:"amount_cents"`
			Status      string
			Fraud       struct {
				Service  string
				TraceID  string `json:"trace_id"`
				Decision string
			}
		}
	}
}

const (
	incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingSpan  = "00f067aa0ba902b7"
)

func tracedHeader() http.Header {
	return http.Header{
		"Traceparent": {"00-" + incomingTrace + "-" + incomingSpan + "-01"},
		"Tracestate":  {"shop=1"},
	}
}

func TestCheckoutReturnsWholeChain(t *testing.T) {
	st := startStack(t, stackOptions{})
	var got checkout
	if code := st.get(t, "/checkout?item=sku-1&qty=2", nil, &got); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	o := got.Order
	services := []string{got.Service, o.Service, o.Inventory.Service, o.Payment.Service, o.Payment.Fraud.Service}
	if want := []string{Gateway, Orders, Inventory, Payments, Fraud}; strings.Join(services, " ") != strings.Join(want, " ") {
		t.Errorf("chain = %v, want %v", services, want)
	}
	if o.Qty != 2 || o.Inventory.Reserved != 2 || o.TotalCents != 2*priceCents("sku-1") || o.Payment.AmountCents != o.TotalCents {
		t.Errorf("order = %+v, want qty 2 reserved and charged %d cents", o, 2*priceCents("sku-1"))
	}
	if o.Payment.Status != "captured" || o.Payment.Fraud.Decision != "allow" {
		t.Errorf("payment status %q, fraud decision %q; want captured, allow", o.Payment.Status, o.Payment.Fraud.Decision)
	}

	// The order is kept and readable through the gateway's other route.
	var again struct{ Order struct{ ID string } }
	if code := st.get(t, "/orders/"+o.ID, nil, &again); code != http.StatusOK || again.Order.ID != o.ID {
		t.Errorf("GET /orders/%s = %d %+v, want 200 and the same order", o.ID, code, again)
	}
	var f Failure
	if code := st.get(t, "/orders/ord-nope", nil, &f); code != http.StatusNotFound || f.Hop != Orders {
		t.Errorf("GET /orders/ord-nope = %d %+v, want 404 from orders passed through", code, f)
	}
}

func TestTraceContext(t *testing.T) {
	st := startStack(t, stackOptions{})
	var got checkout
	if code := st.get(t, "/checkout?item=sku-1", tracedHeader(), &got); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}

	// gateway → orders propagates the incoming trace and tracestate.
	if got.TraceID != incomingTrace || got.Order.TraceID != incomingTrace {
		t.Errorf("gateway, orders trace ids = %s, %s; want both %s", got.TraceID, got.Order.TraceID, incomingTrace)
	}
	in := st.only(t, Orders).header
	if tp := in.Get("traceparent"); !strings.HasPrefix(tp, "00-"+incomingTrace+"-") || strings.Contains(tp, incomingSpan) {
		t.Errorf("orders got traceparent %q, want the incoming trace with the gateway's own span id", tp)
	}
	if ts := in.Get("tracestate"); ts != "shop=1" {
		t.Errorf("orders got tracestate %q, want shop=1", ts)
	}

	// orders deliberately propagates nothing: its upstreams start new traces.
	for _, svc := range []string{Inventory, Payments} {
		h := st.only(t, svc).header
		if h.Get("traceparent") != "" || h.Get("tracestate") != "" {
			t.Errorf("%s got traceparent %q, tracestate %q from orders; want none", svc, h.Get("traceparent"), h.Get("tracestate"))
		}
	}
	p := got.Order.Payment
	if p.TraceID == incomingTrace || got.Order.Inventory.TraceID == incomingTrace || p.TraceID == got.Order.Inventory.TraceID {
		t.Errorf("inventory, payments trace ids = %s, %s; want two new traces", got.Order.Inventory.TraceID, p.TraceID)
	}

	// payments → fraud propagates again, in payments' new trace.
	tp := st.only(t, Fraud).header.Get("traceparent")
	if !strings.HasPrefix(tp, "00-"+p.TraceID+"-") || p.Fraud.TraceID != p.TraceID {
		t.Errorf("fraud got traceparent %q in trace %s, want payments' trace %s", tp, p.Fraud.TraceID, p.TraceID)
	}
	if s := tracectx.Extract(http.Header{"Traceparent": {tp}}); s.ParentID == "" {
		t.Errorf("fraud's traceparent %q is not valid W3C trace context", tp)
	}
}

func TestSlowKnobDelaysOnlyTheNamedHop(t *testing.T) {
	const delay = 150 * time.Millisecond
	st := startStack(t, stackOptions{})
	var got checkout
	if code := st.get(t, "/checkout?item=sku-1&slow=payments:150ms", nil, &got); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	if d := st.only(t, Payments).duration; d < delay {
		t.Errorf("payments took %s, want at least %s", d, delay)
	}
	for _, svc := range []string{Inventory, Fraud} {
		if d := st.only(t, svc).duration; d >= delay {
			t.Errorf("%s took %s, want well under %s: the knob names payments only", svc, d, delay)
		}
	}
}

func TestFailures(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name       string
		query      string
		opts       stackOptions
		wantCode   int
		wantHop    string
		wantStatus int
		notCalled  []string
	}{
		{"inventory 503", "fail=inventory:503", stackOptions{}, http.StatusBadGateway, Inventory, 503, []string{Payments, Fraud}},
		{"fraud 500", "fail=fraud:500", stackOptions{}, http.StatusBadGateway, Fraud, 500, nil},
		{"client error passes through", "fail=fraud:429", stackOptions{}, http.StatusTooManyRequests, Fraud, 429, nil},
		{"orders itself", "fail=orders:500,payments:503", stackOptions{}, http.StatusBadGateway, Orders, 500, []string{Inventory, Payments}},
		{"bad knob", "slow=payments", stackOptions{}, http.StatusBadRequest, Gateway, 400, []string{Orders}},
		{"unreachable", "", stackOptions{inventoryURL: closed.URL}, http.StatusBadGateway, Inventory, 0, []string{Payments}},
		{"timeout", "slow=inventory:1m", stackOptions{ordersClient: &http.Client{Timeout: 100 * time.Millisecond}},
			http.StatusGatewayTimeout, Inventory, 0, []string{Payments}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := startStack(t, tt.opts)
			var f Failure
			code := st.get(t, "/checkout?item=sku-1&"+tt.query, nil, &f)
			if code != tt.wantCode || f.Service != Gateway || f.Hop != tt.wantHop || f.Status != tt.wantStatus {
				t.Errorf("got %d %+v, want %d from gateway naming hop %s with status %d", code, f, tt.wantCode, tt.wantHop, tt.wantStatus)
			}
			if f.Message == "" {
				t.Error("failure has no error message")
			}
			for _, svc := range tt.notCalled {
				if n := st.count(svc); n != 0 {
					t.Errorf("%s got %d requests after the failure, want 0", svc, n)
				}
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	for _, name := range Names() {
		rec := httptest.NewRecorder()
		must(New(Config{Name: name})).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz?fail="+name+":500", nil))
		if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
			t.Errorf("%s /healthz = %d %q, want 200 ok", name, rec.Code, rec.Body)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{{Name: "billing"}, {Name: Gateway, OrdersURL: "localhost:18082"}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

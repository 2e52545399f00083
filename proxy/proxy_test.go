package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// memRecorder collects spans for tests.
type memRecorder struct {
	mu    sync.Mutex
	spans []*trace.Span
	ch    chan *trace.Span
}

func newMemRecorder() *memRecorder { return &memRecorder{ch: make(chan *trace.Span, 1000)} }

func (m *memRecorder) Record(s *trace.Span) {
	m.mu.Lock()
	m.spans = append(m.spans, s)
	m.mu.Unlock()
	m.ch <- s
}

// next waits for the next recorded span.
func (m *memRecorder) next(t *testing.T) *trace.Span {
	t.Helper()
	select {
	case s := <-m.ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no span recorded")
		return nil
	}
}

// callers is a CallerResolver from a fixed map of client ports.
type callers struct {
	mu      sync.Mutex
	m       map[uint16]string
	lookups int
}

func (c *callers) Caller(remote, _ netip.AddrPort) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lookups++
	return c.m[remote.Port()]
}

// client is an HTTP client for service svc whose connections c names as
// svc's, by their local port.
func (c *callers) client(svc string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, n, a)
		if err == nil {
			c.mu.Lock()
			c.m[conn.LocalAddr().(*net.TCPAddr).AddrPort().Port()] = svc
			c.mu.Unlock()
		}
		return conn, err
	}}}
}

func (c *callers) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookups
}

// front puts a proxy route named service in front of upstream and
// returns the proxy's address.
func front(t *testing.T, s *Server, routes ...Route) []string {
	t.Helper()
	var out []string
	for i := range routes {
		if routes[i].Listen == "" {
			routes[i].Listen = freeAddr(t)
		}
		out = append(out, routes[i].Listen)
	}
	if err := s.SetRoutes(routes); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func hostOf(u string) string { return strings.TrimPrefix(u, "http://") }

func TestHTTPHopContinuesTraceWithNewSpanID(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	var got http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Set-Cookie", "session=secret")
		w.WriteHeader(201)
		io.WriteString(w, "made")
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "orders", Upstream: hostOf(up.URL)})[0]

	req, _ := http.NewRequest("POST", "http://"+addr+"/orders/42?x=1", strings.NewReader("hello"))
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.Header.Set("Authorization", "Bearer abc")
	req.Header.Set("X-Api-Key", "k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(body) != "made" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	sp := rec.next(t)
	tp, ok := propagate.ParseTraceParent(got.Get("Traceparent"))
	if !ok {
		t.Fatalf("upstream got no valid traceparent: %q", got.Get("Traceparent"))
	}
	if tp.TraceID.String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id not continued: %s", tp.TraceID)
	}
	if tp.ParentID != sp.SpanID || !sp.SpanID.IsValid() || sp.SpanID.String() == "00f067aa0ba902b7" {
		t.Errorf("upstream parent id %s, span id %s: want the hop's own new id", tp.ParentID, sp.SpanID)
	}
	if sp.ParentID.String() != "00f067aa0ba902b7" {
		t.Errorf("span parent %s, want the incoming parent", sp.ParentID)
	}
	if got.Get("Authorization") != "Bearer abc" {
		t.Error("credentials must reach the service untouched")
	}
	// The same ids in every default format.
	if st, ok := propagate.ParseSentryTrace(got.Get("Sentry-Trace")); !ok || st.TraceID != tp.TraceID || st.SpanID != tp.ParentID {
		t.Errorf("sentry-trace %q disagrees with traceparent", got.Get("Sentry-Trace"))
	}
	if !strings.HasPrefix(got.Get("B3"), tp.TraceID.String()+"-"+tp.ParentID.String()) {
		t.Errorf("b3 %q disagrees with traceparent", got.Get("B3"))
	}
	if got.Get("X-Request-Id") == "" || got.Get("X-Request-Id") != sp.RequestID {
		t.Errorf("X-Request-ID %q not generated or not recorded (%q)", got.Get("X-Request-Id"), sp.RequestID)
	}
	if sp.Callee != "orders" || sp.Method != "POST" || sp.Route != "/orders/42" || sp.Status != 201 ||
		sp.BytesIn != 5 || sp.BytesOut != 4 || sp.Protocol != "http" || sp.Duration <= 0 || sp.TTFB <= 0 || sp.TTFB > sp.Duration {
		t.Errorf("span fields: %+v", sp)
	}
	for _, h := range append(sp.ReqHeaders, sp.RespHeaders...) {
		switch h.Name {
		case "Authorization", "X-Api-Key", "Set-Cookie":
			if h.Value != Redacted {
				t.Errorf("%s recorded as %q", h.Name, h.Value)
			}
		}
	}
}

func TestRequestWithoutContextStartsTraceAndKeepsRequestID(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	var got http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer up.Close()
	addr := front(t, s, Route{Service: "gw", Upstream: hostOf(up.URL)})[0]
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Header.Set("X-Request-ID", "my-id-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sp := rec.next(t)
	if sp.ParentID.IsValid() || !sp.TraceID.IsValid() {
		t.Errorf("want a root span of a new trace: %+v", sp)
	}
	if got.Get("X-Request-Id") != "my-id-1" {
		t.Errorf("X-Request-ID changed: %q", got.Get("X-Request-Id"))
	}
}

// TestNestingAndBrokenPropagation runs gateway → orders → inventory with
// orders dropping the trace context, and checks the three hops form one
// trace with correct parents and the inferred link.
func TestNestingAndBrokenPropagation(t *testing.T) {
	rec := newMemRecorder()
	cl := &callers{m: map[uint16]string{}}
	var broken []string
	s := New(Options{Recorder: rec, Callers: cl, OnBrokenPropagation: func(svc string) { broken = append(broken, svc) }})
	addrs := make([]string, 3)
	client := func(svc string) *http.Client { return cl.client(svc) }
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "stock") }))
	defer inventory.Close()
	orders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Drops the context on purpose.
		resp, err := client("orders").Get("http://" + addrs[2] + "/stock")
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		resp.Body.Close()
	}))
	defer orders.Close()
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An instrumented service: its own span id on the way out.
		in, _ := propagate.ParseTraceParent(r.Header.Get("Traceparent"))
		out := propagate.TraceParent{TraceID: in.TraceID, ParentID: trace.NewSpanID(nil), Flags: 1}
		req, _ := http.NewRequest("GET", "http://"+addrs[1]+"/orders", nil)
		req.Header.Set("Traceparent", out.Format())
		resp, err := client("gateway").Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		resp.Body.Close()
	}))
	defer gateway.Close()
	copy(addrs, front(t, s,
		Route{Service: "gateway", Upstream: hostOf(gateway.URL)},
		Route{Service: "orders", Upstream: hostOf(orders.URL)},
		Route{Service: "inventory", Upstream: hostOf(inventory.URL)}))
	resp, err := http.Get("http://" + addrs[0] + "/checkout")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := map[string]*trace.Span{}
	for range 3 {
		sp := rec.next(t)
		got[sp.Callee] = sp
	}
	gw, ord, inv := got["gateway"], got["orders"], got["inventory"]
	if ord.TraceID != gw.TraceID || inv.TraceID != gw.TraceID {
		t.Fatalf("hops in different traces: %s %s %s", gw.TraceID, ord.TraceID, inv.TraceID)
	}
	if ord.ParentID != gw.SpanID || ord.Caller != "gateway" || ord.Inferred {
		t.Errorf("orders hop: parent %s caller %q inferred %v; want under gateway's hop %s", ord.ParentID, ord.Caller, ord.Inferred, gw.SpanID)
	}
	if inv.ParentID != ord.SpanID || inv.Caller != "orders" || !inv.Inferred {
		t.Errorf("inventory hop: parent %s caller %q inferred %v; want inferred under orders' hop %s", inv.ParentID, inv.Caller, inv.Inferred, ord.SpanID)
	}
	if len(broken) != 1 || broken[0] != "orders" {
		t.Errorf("broken propagation reported for %v, want [orders]", broken)
	}
}

// TestOverlappingRequestsThroughANonPropagatingService sends two requests
// through orders, which drops the trace context and calls inventory, then
// payments, one after the other. The second request comes in while the
// first waits on inventory; the first's inventory answers first. Each
// inferred call must land in its own request's trace: the first's call to
// payments follows its inventory answer, though the second request came in
// later. The inferred hops must also carry on the trace as orders' hop
// sent it: an unsampled trace stays unsampled, and the random-id flag is
// not claimed for an id devstack did not make.
func TestOverlappingRequestsThroughANonPropagatingService(t *testing.T) {
	rec := newMemRecorder()
	cl := &callers{m: map[uint16]string{}}
	s := New(Options{Recorder: rec, Callers: cl})
	addrs := make([]string, 3)
	arrived := make(chan string, 2)
	release := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/reserve/")
		arrived <- id
		<-release[id]
	}))
	defer inventory.Close()
	var mu sync.Mutex
	sent := map[string]string{} // request → traceparent payments got
	payments := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent[strings.TrimPrefix(r.URL.Path, "/charge/")] = r.Header.Get("Traceparent")
		mu.Unlock()
	}))
	defer payments.Close()
	orders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/orders/")
		c := cl.client("orders") // no context on either call
		for _, u := range []string{"http://" + addrs[1] + "/reserve/" + id, "http://" + addrs[2] + "/charge/" + id} {
			resp, err := c.Get(u)
			if err != nil {
				http.Error(w, err.Error(), 502)
				return
			}
			resp.Body.Close()
		}
	}))
	defer orders.Close()
	copy(addrs, front(t, s,
		Route{Service: "orders", Upstream: hostOf(orders.URL)},
		Route{Service: "inventory", Upstream: hostOf(inventory.URL)},
		Route{Service: "payments", Upstream: hostOf(payments.URL)}))
	ordersAddr := addrs[0]

	traceOf := map[string]string{"a": "0af7651916cd43dd8448eb211c80319c", "b": "4bf92f3577b34da6a3ce929d0e0e4736"}
	flagsOf := map[string]string{"a": "00", "b": "01"} // a is not sampled
	done := make(chan error, 2)
	call := func(id string) {
		req, _ := http.NewRequest("GET", "http://"+ordersAddr+"/orders/"+id, nil)
		req.Header.Set("Traceparent", "00-"+traceOf[id]+"-b7ad6b7169203331-"+flagsOf[id])
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}
	wait := func(want string) {
		t.Helper()
		select {
		case id := <-arrived:
			if id != want {
				t.Fatalf("inventory got %q first, want %q", id, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("inventory never got request %s", want)
		}
	}
	go call("a")
	wait("a")
	go call("b")
	wait("b")
	close(release["a"]) // a's inventory answers; a goes on to payments
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(release["b"])
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	for range 6 {
		sp := rec.next(t)
		id := sp.Route[strings.LastIndexByte(sp.Route, '/')+1:]
		if got := sp.TraceID.String(); got != traceOf[id] {
			t.Errorf("%s %s (request %s) is in trace %s, want %s", sp.Callee, sp.Route, id, got, traceOf[id])
		}
		if sp.Callee != "orders" && !sp.Inferred {
			t.Errorf("%s %s not marked inferred", sp.Callee, sp.Route)
		}
	}
	for id, tp := range sent {
		if want := "-" + flagsOf[id]; !strings.HasSuffix(tp, want) || !strings.Contains(tp, traceOf[id]) {
			t.Errorf("request %s: payments got traceparent %q, want trace %s with flags %s", id, tp, traceOf[id], flagsOf[id])
		}
	}
}

func TestSSEIsStreamedNotBuffered(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { twoEvents(w, release) }))
	defer up.Close()
	addr := front(t, s, Route{Service: "events", Upstream: hostOf(up.URL)})[0]
	resp, err := http.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if !strings.Contains(string(rest), "data: second") {
		t.Fatalf("rest %q", rest)
	}
	if sp := rec.next(t); sp.Protocol != "sse" || sp.BytesOut != int64(len("data: first\n\ndata: second\n\n")) {
		t.Errorf("span %+v", sp)
	}
}

// upgradeAndEcho answers a WebSocket handshake with 101, then echoes the
// first 4 bytes it gets: the handshake is HTTP, the rest is bytes.
func upgradeAndEcho(t *testing.T, w http.ResponseWriter) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	brw.Flush()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(brw, buf); err == nil {
		c.Write(buf)
	}
}

// upgradeAndPing makes the WebSocket handshake for path on c, then checks
// that 4 bytes sent come back (from upgradeAndEcho).
func upgradeAndPing(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	c.Write([]byte("ping"))
	echo := make([]byte, 4)
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != "ping" {
		t.Fatalf("echo %q %v", echo, err)
	}
}

// twoEvents streams one server-sent event, waits for release, then sends
// a second: a client that sees the first before release shows that the
// stream was not buffered.
func twoEvents(w http.ResponseWriter, release <-chan struct{}) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, "data: first\n\n")
	w.(http.Flusher).Flush()
	<-release
	io.WriteString(w, "data: second\n\n")
}

func TestWebSocketUpgrade(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	// A minimal upgrade-and-echo server: the handshake is HTTP, the rest
	// is bytes.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { upgradeAndEcho(t, w) }))
	defer up.Close()
	addr := front(t, s, Route{Service: "ws", Upstream: hostOf(up.URL)})[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	upgradeAndPing(t, c, bufio.NewReader(c), "/chat")
	c.Close()
	sp := rec.next(t)
	if sp.Protocol != "websocket" || sp.Status != 101 || sp.BytesIn < 4 || sp.BytesOut < 4 {
		t.Errorf("span %+v", sp)
	}
}

func TestGRPCStatusAndTrailersPassThrough(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("ok", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(l)
	defer gs.Stop()
	addr := front(t, s, Route{Service: "grpcsvc", Upstream: l.Addr().String()})[0]
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "ok"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("check through the proxy: %v %v", resp, err)
	}
	if sp := rec.next(t); sp.Protocol != "grpc" || sp.GRPCStatus != 0 || sp.Route != "/grpc.health.v1.Health/Check" {
		t.Errorf("ok span %+v", sp)
	}
	_, err = hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("want NotFound through the proxy, got %v", err)
	}
	if sp := rec.next(t); sp.GRPCStatus != int(codes.NotFound) || !sp.Failed() {
		t.Errorf("not-found span %+v", sp)
	}
}

func TestTCPClientFirstAndServerFirst(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec, DetectTimeout: 50 * time.Millisecond})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				io.WriteString(c, "echo "+line)
			}()
		}
	}()
	addr := front(t, s, Route{Service: "redis", Upstream: l.Addr().String()})[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PING\n")
	got, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if got != "echo PING\n" {
		t.Fatalf("client-first: %q", got)
	}
	sp := rec.next(t)
	if sp.Protocol != "tcp" || sp.BytesIn != 5 || sp.BytesOut != 10 || sp.Error != "" {
		t.Errorf("tcp span %+v", sp)
	}
	// A server-first protocol (MySQL-like): the server greets, the client
	// sends nothing first. Detection gives up waiting and proxies TCP.
	greeter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer greeter.Close()
	go func() {
		c, err := greeter.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "+GREETING\n")
		io.Copy(io.Discard, c)
	}()
	addr2 := front(t, s, Route{Service: "redis", Upstream: l.Addr().String()}, Route{Service: "mysql", Upstream: greeter.Addr().String()})[1]
	c2, err := net.Dial("tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ = bufio.NewReader(c2).ReadString('\n')
	c2.Close()
	if got != "+GREETING\n" {
		t.Fatalf("server-first: %q", got)
	}
	if sp := rec.next(t); sp.Callee != "mysql" || sp.Protocol != "tcp" || sp.BytesOut != 10 {
		t.Errorf("server-first span %+v", sp)
	}
}

func TestRequestsAreHeldWhileTheServiceRestarts(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	upAddr := freeAddr(t) // nothing listens here yet: the service is "restarting"
	addr := front(t, s, Route{Service: "slowboot", Upstream: upAddr})[0]
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			resp.Body.Close()
		}
		done <- err
	}()
	// Wait until the request is held in the proxy, then bring the service up.
	deadline := time.Now().Add(5 * time.Second)
	for s.hops.inFlight("slowboot") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the proxy")
		}
		time.Sleep(time.Millisecond)
	}
	l, err := net.Listen("tcp", upAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(l)
	defer srv.Close()
	if err := <-done; err != nil {
		t.Fatalf("a held request failed: %v", err)
	}
}

func TestSetRoutesSwitchesUpstreamInPlace(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(a.URL)})[0]
	get := func() string {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(); got != "a" {
		t.Fatalf("got %q", got)
	}
	if err := s.SetRoutes([]Route{{Service: "svc", Listen: addr, Upstream: hostOf(b.URL)}}); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "b" {
		t.Fatalf("after switch got %q", got)
	}
}

func TestSetRoutesPortInUseNamesServiceAndKeepsTable(t *testing.T) {
	s := New(Options{Recorder: newMemRecorder()})
	defer s.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = s.SetRoutes([]Route{{Service: "web", Listen: l.Addr().String(), Upstream: "127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), `"web"`) || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("want an error naming the service and address, got %v", err)
	}
}

func TestProxyProtocolLineNamesTheRelayedClient(t *testing.T) {
	rec := newMemRecorder()
	cl := &callers{m: map[uint16]string{4242: "orders"}}
	// The test's client is on loopback, which is not trusted by default.
	s := New(Options{Recorder: rec, Callers: cl, TrustProxyLine: func(netip.Addr) bool { return true }})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	addr := front(t, s, Route{Service: "inventory", Upstream: hostOf(up.URL)})[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PROXY TCP4 172.18.0.5 172.18.0.9 4242 8080\r\nGET /stock HTTP/1.1\r\nHost: inventory\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if sp := rec.next(t); sp.Caller != "orders" || sp.Route != "/stock" {
		t.Errorf("span %+v: want the caller named from the PROXY line", sp)
	}
}

// A TCP service called through an ambassador: the PROXY line names the
// caller, and the service gets only the bytes after it.
func TestProxyProtocolLineOnATCPRoute(t *testing.T) {
	rec := newMemRecorder()
	cl := &callers{m: map[uint16]string{4242: "orders"}}
	s := New(Options{Recorder: rec, Callers: cl, TrustProxyLine: func(netip.Addr) bool { return true }})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
		io.WriteString(c, "+PONG\r\n")
	}()
	addr := front(t, s, Route{Service: "redis", Upstream: l.Addr().String(), Protocol: ProtoTCP})[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "PROXY TCP4 172.18.0.5 172.18.0.9 4242 6379\r\nPING\r\n")
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || reply != "+PONG\r\n" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	if line := <-got; line != "PING\r\n" {
		t.Errorf("the service got %q; want the client's bytes without the PROXY line", line)
	}
	c.Close()
	if sp := rec.next(t); sp.Caller != "orders" || sp.Callee != "redis" || sp.Protocol != "tcp" || sp.BytesIn != 6 {
		t.Errorf("span %+v: want a tcp hop orders → redis of 6 bytes in", sp)
	}
}

func TestProxyLineFromLoopbackIsNotTrustedByDefault(t *testing.T) {
	rec := newMemRecorder()
	cl := &callers{m: map[uint16]string{4242: "orders"}}
	s := New(Options{Recorder: rec, Callers: cl})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	addr := front(t, s, Route{Service: "inventory", Upstream: hostOf(up.URL)})[0]
	out := rawExchange(t, addr, "PROXY TCP4 172.18.0.5 172.18.0.9 4242 8080\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400") {
		t.Fatalf("a PROXY line from loopback must not be accepted: %q", out)
	}
}

// A connection closed before sending anything (a client's spare pooled
// connection) is not a hop: nothing is recorded and the service never sees
// it.
func TestAnUnusedConnectionIsNotAHop(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	var mu sync.Mutex
	conns := 0
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	up.Start()
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if out := rawExchange(t, addr, "GET /real HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(out, "ok") {
		t.Fatalf("response %q", out)
	}
	if sp := rec.next(t); sp.Route != "/real" || sp.Protocol != "http" {
		t.Errorf("first span %+v; want the request's, none for the unused connection", sp)
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("the service saw %d connections; want 1", conns)
	}
}

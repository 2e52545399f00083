package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/devstack/devstack/proxy/fault"
)

// faults is a fault table for one test, set one rule at a time.
type faults struct {
	t   *testing.T
	tab fault.Table
}

// set makes r (nil: none) the only rule.
func (f *faults) set(r *fault.Rule) {
	f.t.Helper()
	if r == nil {
		f.tab.Store(nil)
		return
	}
	set, err := fault.Compile([]fault.Rule{*r}, fault.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.tab.Store(set)
}

func rule(service string, dir fault.Direction, f fault.Fault) *fault.Rule {
	return &fault.Rule{Service: service, Direction: dir, Fault: f}
}

// faultCase is one fault and what a client must see of it.
type faultCase struct {
	name  string
	r     *fault.Rule
	label string
	// check gets the client's outcome: the response (nil on a transport
	// error), its body, the error, and how long the exchange took.
	check func(t *testing.T, resp *http.Response, body string, err error, took time.Duration)
	// span checks the recorded hop.
	status int
}

const faultBody = 20 << 10 // bytes the upstream answers with

var faultCases = []faultCase{
	{name: "delay", r: rule("svc", fault.Request, fault.Fault{Kind: fault.Latency, Duration: 150 * time.Millisecond}), label: "latency 150ms", status: 200,
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			if err != nil || resp.StatusCode != 200 || len(body) != faultBody || took < 150*time.Millisecond {
				t.Errorf("delay: %v %v %d bytes in %v; want 200, the whole body, after 150ms", resp, err, len(body), took)
			}
		}},
	{name: "response delay", r: rule("svc", fault.Response, fault.Fault{Kind: fault.Latency, Duration: 150 * time.Millisecond}), label: "latency 150ms on response", status: 200,
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			if err != nil || resp.StatusCode != 200 || took < 150*time.Millisecond {
				t.Errorf("response delay: %v %v in %v", resp, err, took)
			}
		}},
	{name: "abort", r: rule("svc", fault.Request, fault.Fault{Kind: fault.Abort, Status: 503, Body: "injected"}), label: "abort 503", status: 503,
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			if err != nil || resp.StatusCode != 503 || strings.TrimSpace(body) != "injected" {
				t.Errorf("abort: %v %v %q; want 503 injected", resp, err, body)
			}
		}},
	{name: "abort on response", r: rule("svc", fault.Response, fault.Fault{Kind: fault.Abort, Status: 502, Body: "injected"}), label: "abort 502 on response", status: 502,
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			if err != nil || resp.StatusCode != 502 || strings.TrimSpace(body) != "injected" {
				t.Errorf("abort on response: %v %v %q; want 502 injected", resp, err, body)
			}
		}},
	{name: "reset", r: rule("svc", fault.Request, fault.Fault{Kind: fault.Reset}), label: "reset",
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			if err == nil {
				t.Errorf("reset: got %v %q; want a transport error", resp.Status, body)
			}
		}},
	{name: "reset after", r: rule("svc", fault.Request, fault.Fault{Kind: fault.Reset, Duration: 150 * time.Millisecond}), label: "reset after 150ms",
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			if err == nil || took < 150*time.Millisecond {
				t.Errorf("reset after: %v %v after %v; want a transport error after 150ms", resp, err, took)
			}
		}},
	{name: "hang", r: rule("svc", fault.Request, fault.Fault{Kind: fault.Hang, Duration: 200 * time.Millisecond}), label: "hang 200ms",
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			if err == nil || took < 200*time.Millisecond {
				t.Errorf("hang: %v %v after %v; want no answer, then the connection ended after 200ms", resp, err, took)
			}
		}},
	{name: "slow body", r: rule("svc", fault.Request, fault.Fault{Kind: fault.SlowBody, Chunk: 4 << 10, Duration: 30 * time.Millisecond}), label: "slow-body", status: 200,
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			// 5 chunks of 4 KiB, 30ms apart.
			if err != nil || len(body) != faultBody || took < 120*time.Millisecond {
				t.Errorf("slow body: %v %d bytes in %v; want all 20 KiB in 120ms or more", err, len(body), took)
			}
		}},
	{name: "limit data", r: rule("svc", fault.Request, fault.Fault{Kind: fault.LimitData, Bytes: 5000}), label: "limit-data 5000B", status: 200,
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			// The body stops at 5000 bytes and the connection closes.
			if resp == nil || resp.StatusCode != 200 || len(body) != 5000 || err == nil {
				t.Errorf("limit data: %v %d bytes, %v; want 200 and the body cut at 5000 bytes", resp, len(body), err)
			}
		}},
	{name: "rate", r: rule("svc", fault.Request, fault.Fault{Kind: fault.Bandwidth, Rate: 100 << 10}), label: "bandwidth 102400B/s", status: 200,
		check: func(t *testing.T, resp *http.Response, body string, err error, took time.Duration) {
			// 20 KiB at 100 KiB/s: 200ms, less the first chunk's 5 KiB.
			if err != nil || len(body) != faultBody || took < 140*time.Millisecond {
				t.Errorf("rate: %v %d bytes in %v; want all 20 KiB in 150ms or more", err, len(body), took)
			}
		}},
}

// faultUpstream answers every request with faultBody bytes.
func faultUpstream(t *testing.T) string {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", faultBody))
	}))
	t.Cleanup(up.Close)
	return hostOf(up.URL)
}

// Every HTTP/1 path carries out every kind of Decision: the goroutine
// path, and a connection an event loop served (it hands a request with a
// fault to the goroutine path, where waiting is allowed).
func TestFaultsOnTheHTTP1Paths(t *testing.T) {
	for _, path := range []string{"goroutine", "loop"} {
		t.Run(path, func(t *testing.T) {
			rec := newMemRecorder()
			f := &faults{t: t}
			s := New(Options{Recorder: rec, Faults: &f.tab, NoEventLoop: path == "goroutine"})
			addr := front(t, s, Route{Service: "svc", Upstream: faultUpstream(t)})[0]
			cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer cl.CloseIdleConnections()
			for _, fc := range faultCases {
				t.Run(fc.name, func(t *testing.T) {
					// Requests without a fault first: the kept-alive
					// connection goes to an event loop, when there is one,
					// which serves the second.
					f.set(nil)
					for range 2 {
						resp, err := cl.Get("http://" + addr + "/warm")
						if err != nil {
							t.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if sp := rec.next(t); len(sp.Faults) != 0 {
							t.Fatalf("a hop without a fault has %v", sp.Faults)
						}
					}
					f.set(fc.r)
					start := time.Now()
					// A POST: Go's client sends a GET again on a new
					// connection when a reused one is reset.
					resp, err := cl.Post("http://"+addr+"/x", "text/plain", nil)
					var body []byte
					if err == nil {
						body, err = io.ReadAll(resp.Body)
						resp.Body.Close()
					}
					fc.check(t, resp, string(body), err, time.Since(start))
					sp := rec.next(t)
					if len(sp.Faults) != 1 || sp.Faults[0] != fc.label || sp.Route != "/x" {
						t.Errorf("span route %q faults %q; want %q", sp.Route, sp.Faults, fc.label)
					}
					if fc.status != 0 && sp.Status != fc.status {
						t.Errorf("span status %d, want %d", sp.Status, fc.status)
					}
					cl.CloseIdleConnections() // a reset or hang leaves nothing to reuse
				})
			}
			if path == "loop" {
				if ls := s.loops.Load(); ls == nil || ls.served() == 0 {
					t.Error("no request was served by an event loop: the loop's hand-over was not tested")
				}
			}
		})
	}
}

// The net/http path (h2c, gRPC) carries out Decisions too, with a gRPC
// status for a gRPC request.
func TestFaultsOnTheHTTP2Path(t *testing.T) {
	rec := newMemRecorder()
	f := &faults{t: t}
	s := New(Options{Recorder: rec, Faults: &f.tab})
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
	check := func() (time.Duration, error) {
		start := time.Now()
		_, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "ok"})
		return time.Since(start), err
	}

	f.set(rule("grpcsvc", fault.Request, fault.Fault{Kind: fault.AbortGRPC, Status: int(codes.Unavailable), Body: "injected"}))
	if _, err := check(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("gRPC abort: %v; want Unavailable injected", err)
	}
	if sp := rec.next(t); sp.GRPCStatus != int(codes.Unavailable) || len(sp.Faults) != 1 || sp.Protocol != "grpc" {
		t.Errorf("gRPC abort span %+v", sp)
	}
	f.set(rule("grpcsvc", fault.Request, fault.Fault{Kind: fault.Latency, Duration: 150 * time.Millisecond}))
	if took, err := check(); err != nil || took < 150*time.Millisecond {
		t.Fatalf("gRPC delay: %v after %v", err, took)
	}
	if sp := rec.next(t); sp.GRPCStatus != 0 || len(sp.Faults) != 1 {
		t.Errorf("gRPC delay span %+v", sp)
	}
	f.set(rule("grpcsvc", fault.Request, fault.Fault{Kind: fault.Reset}))
	if _, err := check(); err == nil {
		t.Fatal("gRPC reset: the call succeeded")
	}
	if sp := rec.next(t); sp.Error == "" || len(sp.Faults) != 1 {
		t.Errorf("gRPC reset span %+v", sp)
	}
	f.set(nil)
	if _, err := check(); err != nil {
		t.Fatalf("without a fault: %v", err)
	}
	if sp := rec.next(t); len(sp.Faults) != 0 || sp.Error != "" {
		t.Errorf("span without a fault %+v", sp)
	}

	// An HTTP/2 request that is not gRPC gets an HTTP abort.
	up := faultUpstream(t)
	addr2 := front(t, s, Route{Service: "grpcsvc", Upstream: l.Addr().String()}, Route{Service: "h2", Upstream: up})[1]
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	cl := &http.Client{Transport: &http.Transport{Protocols: &p}}
	defer cl.CloseIdleConnections()
	f.set(rule("h2", fault.Request, fault.Fault{Kind: fault.Abort, Status: 418, Body: "teapot"}))
	resp, err := cl.Get("http://" + addr2 + "/y")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 418 || resp.ProtoMajor != 2 || strings.TrimSpace(string(body)) != "teapot" {
		t.Errorf("h2c abort: %s %s %q", resp.Proto, resp.Status, body)
	}
	if sp := rec.next(t); sp.Status != 418 || sp.Protocol != "h2c" || len(sp.Faults) != 1 {
		t.Errorf("h2c abort span %+v", sp)
	}
}

// A TCP route carries out Decisions per connection: a reset without
// dialing (the port looks down), a delay and a rate on what goes to the
// client, a hang.
func TestFaultsOnTCP(t *testing.T) {
	rec := newMemRecorder()
	f := &faults{t: t}
	s := New(Options{Recorder: rec, Faults: &f.tab})
	var dialed atomic.Int64
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader, _ int) {
		dialed.Add(1)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(c, strings.Repeat("y", 10<<10)+" "+line)
		}
	})
	addr := front(t, s, Route{Service: "redis", Upstream: up, Protocol: ProtoTCP})[0]
	ping := func() (string, time.Duration, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		io.WriteString(c, "PING\n")
		got, err := bufio.NewReader(c).ReadString('\n')
		return got, time.Since(start), err
	}

	f.set(rule("redis", fault.Request, fault.Fault{Kind: fault.PortDown}))
	if got, _, err := ping(); err == nil {
		t.Fatalf("reset: got %q", got)
	}
	if sp := rec.next(t); sp.Protocol != "tcp" || len(sp.Faults) != 1 || sp.Error == "" {
		t.Errorf("reset span %+v", sp)
	}
	if n := dialed.Load(); n != 0 {
		t.Errorf("the service was dialed %d times for a port that is down", n)
	}
	f.set(rule("redis", fault.Request, fault.Fault{Kind: fault.Latency, Duration: 150 * time.Millisecond}))
	if got, took, err := ping(); err != nil || !strings.HasSuffix(got, " PING\n") || took < 150*time.Millisecond {
		t.Fatalf("delay: %d bytes, %v, after %v", len(got), err, took)
	}
	if sp := rec.next(t); len(sp.Faults) != 1 || sp.Error != "" {
		t.Errorf("delay span %+v", sp)
	}
	f.set(rule("redis", fault.Request, fault.Fault{Kind: fault.Bandwidth, Rate: 50 << 10}))
	if got, took, err := ping(); err != nil || len(got) != 10<<10+6 || took < 150*time.Millisecond {
		t.Fatalf("rate: %d bytes, %v, after %v; want 10 KiB in 200ms", len(got), err, took)
	}
	rec.next(t)
	f.set(rule("redis", fault.Request, fault.Fault{Kind: fault.Timeout, Duration: 200 * time.Millisecond}))
	got, took, err := ping()
	if err == nil || isTimeout(err) || took < 200*time.Millisecond {
		t.Fatalf("hang: %q %v after %v; want nothing, then the end after 200ms", got, err, took)
	}
	rec.next(t)
	f.set(rule("redis", fault.Request, fault.Fault{Kind: fault.LimitData, Bytes: 1000}))
	if got, _, err := ping(); err == nil || len(got) != 1000 {
		t.Fatalf("limit data: %d bytes, %v; want 1000 bytes, then the end", len(got), err)
	}
	if sp := rec.next(t); len(sp.Faults) != 1 || sp.Faults[0] != "limit-data 1000B" {
		t.Errorf("limit data span %+v", sp)
	}
	// slow-close: the answer comes at once, the close 300ms later.
	f.set(rule("redis", fault.Request, fault.Fault{Kind: fault.SlowClose, Duration: 300 * time.Millisecond}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	io.WriteString(c, "PING\n")
	c.(*net.TCPConn).CloseWrite() // the service sees EOF and closes its end
	all, err := io.ReadAll(c)
	c.Close()
	if err != nil || len(all) != 10<<10+6 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("slow close: %d bytes, %v, closed after %v; want the answer, then the close after 300ms", len(all), err, time.Since(start))
	}
	rec.next(t)
	f.set(nil)
	if got, _, err := ping(); err != nil || !strings.HasSuffix(got, " PING\n") {
		t.Fatalf("without a fault: %q %v", got, err)
	}
	if sp := rec.next(t); len(sp.Faults) != 0 {
		t.Errorf("span without a fault %+v", sp)
	}
}

// With rules for other services only, a service's requests stay on the
// event loop (the fault step costs them a lookup, nothing more).
func TestFaultsForOthersLeaveAServiceOnTheLoop(t *testing.T) {
	rec := newMemRecorder()
	f := &faults{t: t}
	f.set(rule("other", fault.Request, fault.Fault{Kind: fault.Abort, Status: 500}))
	s := New(Options{Recorder: rec, Faults: &f.tab})
	addr := front(t, s, Route{Service: "svc", Upstream: faultUpstream(t)})[0]
	cl := dialClient(t, addr)
	for range 3 {
		resp, _ := cl.do(get("/"), "GET")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if sp := rec.next(t); len(sp.Faults) != 0 {
			t.Fatalf("faults %v on a service without rules", sp.Faults)
		}
	}
	if ls := s.loops.Load(); ls != nil && ls.served() == 0 {
		t.Error("no request was served by an event loop")
	}
}

// A rule that names the caller applies to a call without trace context
// from that service, though nothing links it (no request in flight): the
// fault step looks the caller up.
func TestAFaultForOneCallerOnly(t *testing.T) {
	rec := newMemRecorder()
	f := &faults{t: t}
	r := rule("svc", fault.Request, fault.Fault{Kind: fault.Abort, Status: 503, Body: "injected"})
	r.Caller = "orders"
	f.set(r)
	cs := &callers{m: map[uint16]string{}}
	s := New(Options{Recorder: rec, Faults: &f.tab, Callers: cs})
	addr := front(t, s, Route{Service: "svc", Upstream: faultUpstream(t)})[0]
	for _, caller := range []string{"orders", "inventory"} {
		cl := cs.client(caller)
		resp, err := cl.Get("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cl.CloseIdleConnections()
		want := 200
		if caller == "orders" {
			want = 503
		}
		sp := rec.next(t)
		if resp.StatusCode != want || sp.Caller != caller || (len(sp.Faults) == 1) != (caller == "orders") {
			t.Errorf("from %s: status %d (want %d), span caller %q faults %q", caller, resp.StatusCode, want, sp.Caller, sp.Faults)
		}
	}
}

// BenchmarkInjectedLatency measures how late an injected 5 ms latency
// ends the request, one kept-alive connection at a time, on each HTTP/1
// path: the request's latency through the proxy with the fault, minus
// 5 ms, minus the same request's median without it (so what is left is
// the wait's own error), at p50 and p99:
//
//	go test -run '^$' -bench InjectedLatency -benchtime 400x ./proxy/
func BenchmarkInjectedLatency(b *testing.B) {
	const d = 5 * time.Millisecond
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	for _, path := range []string{"goroutine", "loop"} {
		b.Run(path, func(b *testing.B) {
			var tab fault.Table
			s := New(Options{Recorder: discardRecorder{}, Faults: &tab, NoEventLoop: path == "goroutine"})
			defer s.Close()
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := l.Addr().String()
			l.Close()
			if err := s.SetRoutes([]Route{{Service: "svc", Listen: addr, Upstream: hostOf(up.URL)}}); err != nil {
				b.Fatal(err)
			}
			cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer cl.CloseIdleConnections()
			get := func() time.Duration {
				start := time.Now()
				resp, err := cl.Get("http://" + addr + "/x")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return time.Since(start)
			}
			base := make([]time.Duration, 200)
			for i := range base {
				base[i] = get()
			}
			slices.Sort(base)
			set, err := fault.Compile([]fault.Rule{{Service: "svc", Fault: fault.Fault{Kind: fault.Latency, Duration: d}}}, fault.Options{})
			if err != nil {
				b.Fatal(err)
			}
			tab.Store(set)
			late := make([]time.Duration, 0, b.N)
			for b.Loop() {
				late = append(late, get()-d-base[len(base)/2])
			}
			slices.Sort(late)
			b.ReportMetric(float64(base[len(base)/2].Microseconds()), "no-fault-p50-µs")
			b.ReportMetric(float64(late[len(late)/2].Microseconds()), "p50-late-µs")
			b.ReportMetric(float64(late[len(late)*99/100].Microseconds()), "p99-late-µs")
		})
	}
}

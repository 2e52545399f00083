package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
)

func TestQueryRuleConfigured(t *testing.T) {
	r := NewQueryRule([]string{"Customer", "!code"})
	for _, c := range []struct{ in, want string }{
		{"region=EU&code=1&token=t", "region=EU&code=1&token=[redacted]"},
		{"customer=42&customer_id=7&CUSTOMER=x", "customer=[redacted]&customer_id=[redacted]&CUSTOMER=[redacted]"},
		{"sig=a&X-Amz-Signature=b", "sig=[redacted]&X-Amz-Signature=[redacted]"},
		{"page=2", "page=2"},
	} {
		if got := r.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
		b, changed := r.AppendRedacted([]byte("?"), c.in)
		if string(b) != "?"+c.want || changed != (c.in != c.want) {
			t.Errorf("AppendRedacted(%q) = %q, %v", c.in, b, changed)
		}
	}
	// The default rule is RedactQuery's.
	if got := NewQueryRule(nil).Redact("code=1&customer=2&x=3"); got != RedactQuery("code=1&customer=2&x=3") || got != "code=[redacted]&customer=2&x=3" {
		t.Errorf("default rule: %q", got)
	}
	// The configured rule also applies to URLs in recorded header values.
	rd := NewRedactor(nil).WithQuery(r)
	h := rd.Headers(http.Header{"Referer": {"http://shop/cart?customer=42&code=abc"}})
	if len(h) != 1 || h[0].Value != "http://shop/cart?customer=[redacted]&code=abc" {
		t.Errorf("Referer recorded as %+v", h)
	}
}

// TestRequestHopQueryAllocs holds the hot path to its promise: a query
// string costs no allocation, not even one with a value to redact.
func TestRequestHopQueryAllocs(t *testing.T) {
	s := New(Options{Recorder: discardRecorder{}})
	th := &hopHeaders{}
	allocs := func(target string) float64 {
		raw := "GET " + target + " HTTP/1.1\r\nHost: bench\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
		var h head
		sr := strings.NewReader(raw)
		br := bufio.NewReader(sr)
		span := trace.NewSpan()
		return testing.AllocsPerRun(200, func() {
			sr.Reset(raw)
			br.Reset(sr)
			if err := readHead(br, &h); err != nil {
				t.Fatal(err)
			}
			got, _ := s.requestHop(span, &h, th, th.extract(&h, nil), nil, "x", time.Now())
			s.hops.end(got)
		})
	}
	base := allocs("/x")
	for _, target := range []string{"/x?region=EU&page=2", "/x?region=EU&access_token=abcdef&page=2"} {
		if n := allocs(target); n > base {
			t.Errorf("%s: %.0f allocations per hop, %.0f without a query", target, n, base)
		}
	}
}

// TestQueryRecordedOnEveryPath records a query, redacted, on the HTTP/1
// path and on the net/http (h2c) path.
func TestQueryRecordedOnEveryPath(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec, RedactQuery: []string{"customer"}})
	var got string
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RawQuery
	}))
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetHTTP1(true)
	up.Config.Protocols.SetUnencryptedHTTP2(true)
	up.Start()
	defer up.Close()
	addr := front(t, s, Route{Service: "orders", Upstream: hostOf(up.URL)})[0]

	const q = "region=EU&token=s3cr3t&customer=42"
	resp, err := http.Get("http://" + addr + "/orders?" + q)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	sp := rec.next(t)
	if got != q {
		t.Errorf("the service got query %q, want it untouched: %q", got, q)
	}
	if sp.Route != "/orders" || sp.Query != "region=EU&token=[redacted]&customer=[redacted]" {
		t.Errorf("HTTP/1: recorded route %q query %q", sp.Route, sp.Query)
	}

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &p}}
	resp, err = h2.Get("http://" + addr + "/orders/7?" + q)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	sp = rec.next(t)
	if sp.Protocol != "h2c" || sp.Route != "/orders/7" || sp.Query != "region=EU&token=[redacted]&customer=[redacted]" {
		t.Errorf("h2c: recorded %s route %q query %q", sp.Protocol, sp.Route, sp.Query)
	}
}

// BenchmarkServeOneQuery is BenchmarkServeOneCPU for request targets with
// and without a query, and with a value to redact: the query costs no
// allocation, and its scan little.
//
//	go test -run '^$' -bench ServeOneQuery -benchmem ./proxy/
func BenchmarkServeOneQuery(b *testing.B) {
	for _, bc := range []struct{ name, target string }{
		{"none", "/x"},
		{"plain", "/x?region=EU&page=2&sort=asc"},
		{"redacted", "/x?region=EU&access_token=abcdef0123456789&page=2"},
	} {
		target := bc.target
		b.Run(bc.name, func(b *testing.B) {
			s := New(Options{Recorder: discardRecorder{}})
			raw := "GET " + target + " HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
			b.ReportAllocs()
			var h head
			th := &hopHeaders{}
			sr := strings.NewReader(raw)
			br := bufio.NewReader(sr)
			span := trace.NewSpan()
			for b.Loop() {
				sr.Reset(raw)
				br.Reset(sr)
				if err := readHead(br, &h); err != nil {
					b.Fatal(err)
				}
				sp, _ := s.requestHop(span, &h, th, th.extract(&h, nil), nil, "x", time.Now())
				s.hops.end(sp)
			}
		})
	}
}

package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A service the user runs and does not: a request is held for
// ExternalHold, then answered 502 saying so, on both HTTP paths; one held
// while the user starts it is served.
func TestExternalServiceNotRunningIsHeldThen502(t *testing.T) {
	rec := newMemRecorder()
	const hold = 300 * time.Millisecond
	s := New(Options{Recorder: rec, HoldFor: time.Minute, ExternalHold: hold})
	upstream := freeAddr(t) // nothing listens there
	addrs := front(t, s, Route{Service: "orders", Upstream: upstream, Protocol: ProtoHTTP})
	const why = "external and not running: start it listening on " + "127.0.0.1:1234"
	s.SetExternal("orders", why)

	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	clients := map[string]*http.Client{
		"http/1.1": {Timeout: 20 * time.Second},
		"h2c":      {Timeout: 20 * time.Second, Transport: &http.Transport{Protocols: &h2}},
	}
	for name, c := range clients {
		start := time.Now()
		resp, err := c.Get("http://" + addrs[0] + "/orders")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "orders is "+why) {
			t.Errorf("%s: %d %q, want 502 saying %q", name, resp.StatusCode, b, "orders is "+why)
		}
		if took < hold {
			t.Errorf("%s: answered after %s, before the hold of %s", name, took, hold)
		}
		if sp := rec.next(t); sp.Status != http.StatusBadGateway || !strings.Contains(sp.Error, "external and not running") {
			t.Errorf("%s: span status %d error %q", name, sp.Status, sp.Error)
		}
	}

	// The user starts it while a request is held: it is served.
	s = New(Options{Recorder: newMemRecorder(), HoldFor: time.Minute, ExternalHold: time.Minute})
	addrs = front(t, s, Route{Service: "orders", Upstream: upstream, Protocol: ProtoHTTP})
	s.SetExternal("orders", why)
	answered := make(chan string, 1)
	go func() {
		resp, err := clients["http/1.1"].Get("http://" + addrs[0] + "/held")
		if err != nil {
			answered <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.hops.inFlight("orders") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the proxy")
		}
		runtime.Gosched()
	}
	l, err := net.Listen("tcp", upstream)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "served "+r.URL.Path) })}
	go srv.Serve(l)
	defer srv.Close()
	if got := <-answered; got != "200 served /held" {
		t.Errorf("held request: %s; want it served once the user's run listens", got)
	}
}

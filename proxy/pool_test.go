package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// keptBy makes s's pool report each connection it keeps on the returned
// channel; kept waits for one.
func keptBy(s *Server) chan string {
	ch := make(chan string, 16)
	s.pool.kept = ch
	return ch
}

func kept(t *testing.T, ch chan string, addr string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != addr {
			t.Fatalf("the pool kept a connection to %s; want %s", got, addr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the pool kept no connection to %s", addr)
	}
}

// Client connections that come and go share upstream connections: the
// service sees one, whichever path (goroutine or event loop) served them.
func TestUpstreamConnectionsOutliveTheirClients(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	keep := keptBy(s)
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	upAddr := hostOf(up.URL)
	addr := front(t, s, Route{Service: "svc", Upstream: upAddr})[0]

	one := func(requests int) {
		cl := dialClient(t, addr)
		for i := range requests {
			path := fmt.Sprintf("/%d", i)
			if _, body := cl.do(get(path), "GET"); body != path {
				t.Fatalf("got %q; want %q", body, path)
			}
			rec.next(t)
		}
		cl.c.Close()
		kept(t, keep, upAddr)
	}
	one(1) // the goroutine path gives it back
	one(3) // the event loop gives it back
	one(1)
	if n := conns.Load(); n != 1 {
		t.Errorf("the service saw %d connections; want 1", n)
	}
}

// An idle pooled connection the service closed is not used: the next
// request goes out on a new one.
func TestAPooledConnectionTheServiceClosedIsNotUsed(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	keep := keptBy(s)
	closeIdle := make(chan struct{})
	upAddr := rawUpstream(t, func(c net.Conn, br *bufio.Reader, n int) {
		if _, err := readRequest(br); err != nil {
			return
		}
		body := fmt.Sprintf("conn %d", n)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if n == 0 {
			<-closeIdle // then closes, idle, while in the pool
			return
		}
		readRequest(br)
	})
	addr := front(t, s, Route{Service: "svc", Upstream: upAddr})[0]
	cl := dialClient(t, addr)
	if _, body := cl.do(get("/a"), "GET"); body != "conn 0" {
		t.Fatalf("first: %q", body)
	}
	cl.c.Close()
	kept(t, keep, upAddr)
	close(closeIdle)
	cl = dialClient(t, addr)
	if resp, body := cl.do(get("/b"), "GET"); resp.StatusCode != 200 || body != "conn 1" {
		t.Errorf("after the service closed the pooled connection: %d %q; want conn 1", resp.StatusCode, body)
	}
}

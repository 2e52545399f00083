//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/store"
)

// The event loop serves a connection's requests after its first. These
// tests send a first request to have the connection adopted, then check
// what the loop does with the next ones, and that it did serve them.

// echoPathAndBody answers "path:body".
func echoPathAndBody(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "%s:%s", r.URL.Path, body)
}

// chunkedUpload is a POST of "abc" to /chunked with a chunked body, which
// the loop hands back to the goroutine path.
const chunkedUpload = "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"

// wantServed checks how many exchanges s's loops relayed.
func wantServed(t *testing.T, s *Server, want uint64, which string) {
	t.Helper()
	var n uint64
	if ls := s.loops.Load(); ls != nil {
		n = ls.served()
	}
	if n != want {
		t.Errorf("the loop served %d exchanges; want %d: %s", n, want, which)
	}
}

func TestLoopRelaysEveryFraming(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush() // chunked from here on
			io.WriteString(w, "part2")
			w.Header().Set("X-Sum", "11")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/cached":
			w.WriteHeader(http.StatusNotModified)
		case "/upload":
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "got %d %x", len(body), sha256.Sum256(body))
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	rec.next(t)

	if resp, body := cl.do(get("/cl"), "GET"); resp.StatusCode != 200 || body != "hello" {
		t.Errorf("content-length: %d %q", resp.StatusCode, body)
	}
	if sp := rec.next(t); sp.Route != "/cl" || sp.Status != 200 || sp.BytesOut != 5 || !sp.TraceID.IsValid() {
		t.Errorf("span %+v", sp)
	}
	resp, body := cl.do(get("/chunked"), "GET")
	if body != "part1,part2" || resp.Trailer.Get("X-Sum") != "11" {
		t.Errorf("chunked: %q, trailer %v", body, resp.Trailer)
	}
	if sp := rec.next(t); sp.BytesOut != 11 {
		t.Errorf("chunked span: %d bytes out; want the 11 of payload", sp.BytesOut)
	}
	if resp, body := cl.do("HEAD /cl HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD"); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	rec.next(t)
	for _, path := range []string{"/empty", "/cached"} {
		if resp, body := cl.do(get(path), "GET"); resp.StatusCode/100 == 2 && resp.StatusCode != 204 || body != "" {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
		rec.next(t)
	}
	// A body of known length, larger than one read.
	upload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
	raw := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(upload), upload)
	want := fmt.Sprintf("got %d %x", len(upload), sha256.Sum256(upload))
	if _, body := cl.do(raw, "POST"); body != want {
		t.Errorf("upload: %q; want %q", body, want)
	}
	if sp := rec.next(t); sp.BytesIn != int64(len(upload)) || sp.Method != "POST" {
		t.Errorf("upload span: %d bytes in, method %s", sp.BytesIn, sp.Method)
	}
	wantServed(t, s, 6, "every request after the first")
}

// A response much larger than the sockets' buffers, to a client that
// reads it in small pieces: the loop keeps what the client cannot take
// yet and stops reading the upstream until it does.
func TestLoopLargeResponseToASlowReader(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	big := bytes.Repeat([]byte("devstack"), 4<<20) // 32 MiB
	sum := sha256.Sum256(big)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.Write(big)
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	io.WriteString(cl.c, get("/big"))
	resp, err := http.ReadResponse(cl.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 1000)
	n, err := io.CopyBuffer(h, struct{ io.Reader }{resp.Body}, buf)
	if err != nil || n != int64(len(big)) || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("got %d bytes (%v), intact %v; want %d", n, err, bytes.Equal(h.Sum(nil), sum[:]), len(big))
	}
	rec.next(t)
	if sp := rec.next(t); sp.BytesOut != int64(len(big)) || sp.Error != "" {
		t.Errorf("span: %d bytes out, error %q", sp.BytesOut, sp.Error)
	}
	// The connection still works after it.
	if _, body := cl.do(get("/big"), "GET"); len(body) != len(big) {
		t.Errorf("the next response has %d bytes", len(body))
	}
	wantServed(t, s, 2, "both /big")
}

func TestLoopStreamsEvents(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			twoEvents(w, release)
		}
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "events", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	rec.next(t)
	io.WriteString(cl.c, get("/stream"))
	resp, err := http.ReadResponse(cl.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Fatalf("rest %q", rest)
	}
	if sp := rec.next(t); sp.Protocol != "sse" || sp.BytesOut != int64(len("data: first\n\ndata: second\n\n")) {
		t.Errorf("span %+v", sp)
	}
	wantServed(t, s, 1, "/stream")
}

// Requests the loop does not relay itself go back to the goroutine path
// with what was read of them: an upgrade, a chunked upload, Expect.
func TestLoopHandsBackWhatItDoesNotRelay(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			upgradeAndEcho(t, w)
			return
		}
		echoPathAndBody(w, r)
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")

	if _, body := cl.do(chunkedUpload, "POST"); body != "/chunked:abc" {
		t.Errorf("chunked upload: %q", body)
	}
	// Handed back, the connection is adopted again after the exchange.
	if _, body := cl.do(get("/again"), "GET"); body != "/again:" {
		t.Errorf("after the hand-back: %q", body)
	}
	expect := "POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
	io.WriteString(cl.c, expect)
	if resp, _ := cl.read("POST"); resp.StatusCode != http.StatusContinue {
		t.Fatalf("Expect: got %d before the body; want 100", resp.StatusCode)
	}
	io.WriteString(cl.c, "xyz")
	if _, body := cl.read("POST"); body != "/expect:xyz" {
		t.Errorf("expect: %q", body)
	}
	upgradeAndPing(t, cl.c, cl.br, "/ws")
	wantServed(t, s, 1, "/again")
}

// A kept-alive upstream connection closed by the service: while idle, or
// just as the next request goes out. The request is sent again on a new
// connection, as on the goroutine path.
func TestLoopRetriesOnANewConnectionWhenTheServiceClosedIt(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	upAddr := rawUpstream(t, func(c net.Conn, br *bufio.Reader, n int) {
		for i := 0; ; i++ {
			r, err := readRequest(br)
			if err != nil {
				return
			}
			if n == 0 && i == 1 {
				return // closes as the second request arrives
			}
			body := fmt.Sprintf("conn %d: %s", n, r.URL.Path)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			if n == 1 {
				return // closes while idle after one exchange
			}
		}
	})
	addr := front(t, s, Route{Service: "svc", Upstream: upAddr})[0]
	cl := dialClient(t, addr)
	for _, want := range []string{"conn 0: /a", "conn 1: /b", "conn 2: /c", "conn 2: /d"} {
		path := want[len(want)-2:]
		if resp, body := cl.do(get(path), "GET"); resp.StatusCode != 200 || body != want {
			t.Errorf("%s: %d %q; want %q", path, resp.StatusCode, body, want)
		}
		if sp := rec.next(t); sp.Route != path || sp.Status != 200 || sp.Error != "" {
			t.Errorf("span %+v", sp)
		}
	}
	wantServed(t, s, 1, "/d")
}

func TestLoopFollowsASwitchedUpstream(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	mk := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := mk("a"), mk("b")
	route := Route{Service: "svc", Upstream: hostOf(a.URL)}
	addr := front(t, s, route)[0]
	route.Listen = addr
	cl := dialClient(t, addr)
	cl.do(get("/1"), "GET")
	if _, body := cl.do(get("/2"), "GET"); body != "a" {
		t.Fatalf("before the switch: %q", body)
	}
	route.Upstream = hostOf(b.URL)
	if err := s.SetRoutes([]Route{route}); err != nil {
		t.Fatal(err)
	}
	if _, body := cl.do(get("/3"), "GET"); body != "b" {
		t.Errorf("after the switch: %q; want b", body)
	}
	if _, body := cl.do(get("/4"), "GET"); body != "b" {
		t.Errorf("after the switch, again: %q; want b", body)
	}
	wantServed(t, s, 2, "/2 and /4")
}

func TestLoopPipelinedRequestsAnswerInOrder(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	io.WriteString(cl.c, get("/one")+get("/two")+get("/three"))
	for _, want := range []string{"/one", "/two", "/three"} {
		if _, body := cl.read("GET"); body != want {
			t.Errorf("got %q; want %q", body, want)
		}
	}
	wantServed(t, s, 3, "the pipelined three")
}

func TestLoopUpstreamFailures(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	upAddr := rawUpstream(t, func(c net.Conn, br *bufio.Reader, n int) {
		for {
			r, err := readRequest(br)
			if err != nil {
				return
			}
			switch r.URL.Path {
			case "/cut":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
				return
			case "/garbage":
				io.WriteString(c, "NOT HTTP AT ALL\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	})
	addr := front(t, s, Route{Service: "svc", Upstream: upAddr})[0]

	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	rec.next(t)
	io.WriteString(cl.c, get("/cut"))
	resp, err := http.ReadResponse(cl.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := io.ReadAll(resp.Body); err == nil || string(body) != "only ten.." {
		t.Errorf("cut response: %q, %v; want the 10 bytes, then an unexpected EOF", body, err)
	}
	if sp := rec.next(t); sp.Status != 200 || sp.Error != "connection reset by svc" || sp.BytesOut != 10 {
		t.Errorf("span %+v", sp)
	}

	cl = dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	rec.next(t)
	if resp, body := cl.do(get("/garbage"), "GET"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "devstack proxy") {
		t.Errorf("garbage from the service: %d %q; want a 502 of the proxy's", resp.StatusCode, body)
	}
	if sp := rec.next(t); sp.Status != http.StatusBadGateway || sp.Error == "" {
		t.Errorf("span %+v", sp)
	}

	cl = dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	if resp, _ := cl.do("NONSENSE\r\n\r\n", "GET"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad request: %d; want 400", resp.StatusCode)
	}
}

func TestLoopConnectionsEndWithTheServer(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	cl.do(get("/1"), "GET")
	cl.do(get("/2"), "GET")
	wantServed(t, s, 1, "/2")
	s.Close()
	if n, err := cl.br.ReadByte(); err != io.EOF {
		t.Errorf("after Close the connection gave %v, %v; want EOF", n, err)
	}
}

// A client that shuts down its sending side after a request still gets
// the response.
func TestLoopAnswersAClientThatHalfCloses(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release // answers only once the client has half-closed
		}
		io.WriteString(w, "answer")
	}))
	defer up.Close()
	defer close(release)
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	rec.next(t)
	io.WriteString(cl.c, get("/slow"))
	if err := cl.c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	release <- struct{}{}
	if _, body := cl.read("GET"); body != "answer" {
		t.Errorf("got %q", body)
	}
	if sp := rec.next(t); sp.Error != "" || sp.Status != 200 {
		t.Errorf("span %+v", sp)
	}
	if _, err := cl.br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v; want the connection closed", err)
	}
}

// Pipelined requests, the last of which the loop hands back, then the
// client half-closes: every request is answered, in order.
func TestLoopPipelinedHandBackAndHalfClose(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	big := strings.Repeat("x", 4<<20) // more than the socket takes at once
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
			return
		}
		echoPathAndBody(w, r)
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	io.WriteString(cl.c, get("/big")+chunkedUpload+get("/last"))
	cl.c.(*net.TCPConn).CloseWrite()
	if _, body := cl.read("GET"); len(body) != len(big) {
		t.Errorf("/big: %d bytes", len(body))
	}
	if _, body := cl.read("POST"); body != "/chunked:abc" {
		t.Errorf("/chunked: %q", body)
	}
	if _, body := cl.read("GET"); body != "/last:" {
		t.Errorf("/last: %q", body)
	}
	if _, err := cl.br.ReadByte(); err != io.EOF {
		t.Errorf("after the answers: %v; want the connection closed", err)
	}
}

// Random traffic on many connections at once, pipelined in random
// batches, with bodies of random sizes both ways and every response
// framing: each response must be the one the upstream made for its
// request.
func TestLoopRandomTraffic(t *testing.T) {
	s := New(Options{Recorder: discardRecorder{}})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// /<framing>/<size>: a response body of size bytes, derived from
		// the request so that a misrouted answer shows.
		parts := strings.Split(r.URL.Path, "/")
		size, _ := strconv.Atoi(parts[2])
		sum := sha256.Sum256(body)
		out := bytes.Repeat([]byte(fmt.Sprintf("%x|", sum[:4])), size/9+1)[:size]
		switch parts[1] {
		case "chunked":
			w.(http.Flusher).Flush()
			w.Write(out)
		case "empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.Write(out)
		}
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]

	const conns, perConn = 8, 60
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 42))
			cl := dialClient(t, addr)
			type sent struct {
				method, framing string
				size            int
				body            []byte
			}
			for n := 0; n < perConn; {
				batch := min(1+r.IntN(4), perConn-n) // pipelined requests
				var reqs []sent
				var raw bytes.Buffer
				for range batch {
					q := sent{method: "GET", framing: []string{"cl", "chunked", "empty"}[r.IntN(3)], size: r.IntN(40 << 10)}
					if r.IntN(3) == 0 {
						q.method, q.body = "POST", bytes.Repeat([]byte{byte('a' + r.IntN(26))}, r.IntN(100<<10))
					}
					if r.IntN(5) == 0 {
						q.method = "HEAD"
					}
					fmt.Fprintf(&raw, "%s /%s/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", q.method, q.framing, q.size, len(q.body), q.body)
					reqs = append(reqs, q)
				}
				if _, err := cl.c.Write(raw.Bytes()); err != nil {
					t.Error(err)
					return
				}
				for _, q := range reqs {
					resp, body := cl.read(q.method)
					sum := sha256.Sum256(q.body)
					want := bytes.Repeat([]byte(fmt.Sprintf("%x|", sum[:4])), q.size/9+1)[:q.size]
					switch {
					case q.framing == "empty":
						want = nil
						if resp.StatusCode != http.StatusNoContent {
							t.Errorf("conn %d: %s %s: status %d", i, q.method, q.framing, resp.StatusCode)
						}
					case q.method == "HEAD":
						want = nil
					}
					if !bytes.Equal([]byte(body), want) {
						t.Errorf("conn %d: %s /%s/%d: %d bytes, not the ones sent for it", i, q.method, q.framing, q.size, len(body))
						return
					}
				}
				n += batch
			}
		})
	}
	wg.Wait()
	if ls := s.loops.Load(); ls == nil || ls.served() < conns*(perConn-4) {
		t.Errorf("the loop served too few of the exchanges: %v", ls)
	}
}

// A response head that arrives in pieces is put together before it is
// relayed.
func TestLoopResponseHeadInPieces(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	release := make(chan struct{})
	upAddr := rawUpstream(t, func(c net.Conn, br *bufio.Reader, n int) {
		for i := 0; ; i++ {
			if _, err := readRequest(br); err != nil {
				return
			}
			if i == 0 {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwarm")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-")
			<-release
			io.WriteString(c, "Length: 5\r\nX-Part: two\r\n\r\nhello")
		}
	})
	addr := front(t, s, Route{Service: "svc", Upstream: upAddr})[0]
	cl := dialClient(t, addr)
	cl.do(get("/warm"), "GET")
	io.WriteString(cl.c, get("/split"))
	close(release)
	resp, body := cl.read("GET")
	if body != "hello" || resp.Header.Get("X-Part") != "two" {
		t.Errorf("got %q, X-Part %q; want hello, two", body, resp.Header.Get("X-Part"))
	}
	wantServed(t, s, 1, "/split")
}

// A kept-alive connection whose requests name a hop of ours as their
// parent never has its caller looked up (the parent's callee is the
// caller). One whose request does not is handed back once, its caller is
// looked up off the loop, and the loop serves it again after.
func TestLoopLooksUpACallerOnlyWhenARequestNeedsIt(t *testing.T) {
	rec := newMemRecorder()
	cl := &callers{m: map[uint16]string{}}
	s := New(Options{Recorder: rec, Callers: cl})
	defer s.Close()
	up := httptest.NewServer(http.HandlerFunc(echoPathAndBody))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]

	// A hop of ours, to name as the parent.
	rawExchange(t, addr, "GET /root HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	root := rec.next(t)
	before := cl.count()

	c := dialClient(t, addr)
	withParent := func(path string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: x\r\nTraceparent: 00-" + root.TraceID.String() + "-" + root.SpanID.String() + "-01\r\n\r\n"
	}
	for i, path := range []string{"/a", "/b", "/c", "/d"} {
		if resp, body := c.do(withParent(path), "GET"); resp.StatusCode != 200 || body != path+":" {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
		if sp := rec.next(t); sp.Caller != "svc" || sp.ParentID != root.SpanID {
			t.Fatalf("request %d: caller %q parent %s; want svc under the root hop", i, sp.Caller, sp.ParentID)
		}
	}
	wantServed(t, s, 3, "requests after the first, naming our hop")
	if n := cl.count() - before; n != 0 {
		t.Fatalf("%d caller lookups for a connection whose requests name their parent hop; want 0", n)
	}

	// No context: the caller might be needed.
	for _, path := range []string{"/e", "/f"} {
		if resp, body := c.do(get(path), "GET"); resp.StatusCode != 200 || body != path+":" {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
		rec.next(t)
	}
	if n := cl.count() - before; n != 1 {
		t.Fatalf("%d caller lookups after context-less requests; want 1", n)
	}
	wantServed(t, s, 4, "the second context-less request, back on the loop")
}

// A loop with nothing to do waits in a raw syscall, keeping its P, which
// the collector's stop-the-world must still be able to stop: the
// runtime's preemption signal interrupts the wait, and the loop yields.
// Here the loops would hold their Ps for 10 s; a collection that waited
// for that would fail the deadline below by far.
func TestLoopWaitingIdleDoesNotHoldUpTheCollector(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // a P to spare, whatever the machine
	s := New(Options{Recorder: newMemRecorder(), holdWaitMs: 10_000})
	defer s.Close()
	ls := s.eventLoops()
	if ls == nil {
		t.Skip("no event loop on this system")
	}
	for _, l := range ls.ls {
		if l.holdMs != 10_000 {
			t.Fatalf("the loop holds its P %d ms while waiting, not the 10 s asked: this test would prove nothing", l.holdMs)
		}
		ran := make(chan struct{})
		if !l.do(func() { close(ran) }) {
			t.Fatal("a new loop refused work")
		}
		<-ran // the loop is back to waiting, with nothing to do for 10 s
	}
	start := time.Now()
	runtime.GC()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a collection took %v with the loops idle: a loop held up stop-the-world", d)
	}
}

// A loop holds its P while it waits only when that leaves one free: with
// a single P, holding it would keep every other goroutine waiting.
func TestLoopsHoldTheirPsOnlyWithOneToSpare(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct {
		procs, loops int
		hold         bool
	}{{1, 1, false}, {2, 2, false}, {2, 1, true}, {3, 2, true}} {
		runtime.GOMAXPROCS(c.procs)
		s := New(Options{Recorder: newMemRecorder()})
		ls := newLoops(s, c.loops)
		if ls == nil {
			t.Skip("no event loop on this system")
		}
		for _, l := range ls.ls {
			if held := l.holdMs > 0; held != c.hold {
				t.Errorf("GOMAXPROCS %d, %d loops: a loop holds its P while waiting: %v, want %v", c.procs, c.loops, held, c.hold)
			}
		}
		ls.stop()
		s.Close()
	}
}

// A connection whose first request might need its caller has it looked
// up before a loop takes it, so the loop never hands it back for its next
// such request. Here the requests name a span of the caller's own as their
// parent (as instrumented services do) in a trace with one hop in flight:
// the first links to that hop without a lookup, and every later one could
// need the caller.
func TestLoopTakesAConnectionWithItsCallerAlreadyKnown(t *testing.T) {
	rec := newMemRecorder()
	cl := &callers{m: map[uint16]string{}}
	s := New(Options{Recorder: rec, Callers: cl})
	defer s.Close()
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		echoPathAndBody(w, r)
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // a failure below must not leave the handler waiting
	hold, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	hold.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(hold, "GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTraceparent: 00-"+tid+"-1111111111111111-01\r\n\r\n")
	held := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(hold)
		held <- string(b)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.hops.inFlight("svc") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the held request never began")
		}
		runtime.Gosched()
	}
	before := cl.count()
	c := dialClient(t, addr)
	for _, path := range []string{"/a", "/b", "/c", "/d"} {
		raw := "GET " + path + " HTTP/1.1\r\nHost: x\r\nTraceparent: 00-" + tid + "-00f067aa0ba902b7-01\r\n\r\n"
		if resp, body := c.do(raw, "GET"); resp.StatusCode != 200 || body != path+":" {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
		rec.next(t)
	}
	wantServed(t, s, 3, "every request after the first, none handed back")
	if n := cl.count() - before; n != 1 {
		t.Errorf("%d caller lookups; want 1, before the loop took the connection", n)
	}
	unblock()
	if out := <-held; !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Errorf("held request: %q", out)
	}
	rec.next(t)
}

// TestLoopRecordsHeadsWhoseSpansAreReused checks that what the loop records
// survives the reuse of its spans: a head is kept in its span's text
// (trace.Span.Text), which a later request writes over once the store has
// recorded the span. Every stored span must still read as its own request
// and response, long after the span that carried it went back to the pool.
func TestLoopRecordsHeadsWhoseSpansAreReused(t *testing.T) {
	st, err := store.Open("", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Options{Recorder: st})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", r.Header.Get("X-Seq"))
		w.Header().Set("X-Got-Id", r.Header.Get("X-Request-Id"))
		io.WriteString(w, r.URL.Path)
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	cl := dialClient(t, addr)
	const n = 300
	for i := range n {
		path := fmt.Sprintf("/r/%d", i)
		id := "" // odd requests carry none: the proxy makes one
		if i%2 == 0 {
			id = fmt.Sprintf("X-Request-Id: req-%d\r\n", i)
		}
		raw := fmt.Sprintf("GET %s?q=%d HTTP/1.1\r\nHost: x\r\nX-Seq: seq-%d\r\n%s\r\n", path, i, i, id)
		if _, body := cl.do(raw, "GET"); body != path {
			t.Fatalf("request %d: got %q", i, body)
		}
		if i%20 == 0 {
			st.Flush() // the store records what came so far, and frees those spans for reuse
		}
	}
	wantServed(t, s, n-1, "every request after the first")
	st.Flush()
	got := st.Traces(trace.Query{Limit: 2 * n})
	if len(got) != n {
		t.Fatalf("%d traces stored; want %d", len(got), n)
	}
	header := func(hs []trace.Header, name string) string {
		for _, h := range hs {
			if h.Name == name {
				return h.Value
			}
		}
		return ""
	}
	ids := map[string]bool{}
	for _, sum := range got {
		spans := st.Trace(sum.TraceID)
		if len(spans) != 1 {
			t.Fatalf("trace %s has %d spans", sum.TraceID, len(spans))
		}
		sp := spans[0]
		i, err := strconv.Atoi(strings.TrimPrefix(sp.Route, "/r/"))
		if err != nil {
			t.Fatalf("span recorded with route %q", sp.Route)
		}
		want, wantID := fmt.Sprintf("seq-%d", i), fmt.Sprintf("req-%d", i)
		if i%2 == 1 {
			wantID = header(sp.RespHeaders, "X-Got-Id") // the id the service was sent
			if len(wantID) != 36 || ids[wantID] {
				t.Errorf("request %d was sent the request id %q: want a new UUID", i, wantID)
			}
			ids[wantID] = true
		}
		if sp.Method != "GET" || header(sp.ReqHeaders, "X-Seq") != want || header(sp.RespHeaders, "X-Echo") != want ||
			sp.RequestID != wantID || sp.Status != 200 {
			t.Errorf("span of %s reads %s %q, X-Seq %q, X-Echo %q, request id %q, status %d", sp.Route, sp.Method, sp.Route,
				header(sp.ReqHeaders, "X-Seq"), header(sp.RespHeaders, "X-Echo"), sp.RequestID, sp.Status)
		}
	}
}

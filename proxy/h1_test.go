package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// rawExchange writes raw to the proxy and returns everything read until
// the proxy closes the connection.
func rawExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestH1ChunkedBodiesAndTrailersBothWays(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Length")
		io.WriteString(w, "got:")
		w.(http.Flusher).Flush() // forces chunked encoding
		w.Write(body)
		w.Header().Set("X-Length", fmt.Sprint(len(body)))
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	// An io.Reader of unknown length makes the client send chunked.
	req, _ := http.NewRequest("POST", "http://"+addr+"/echo", io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "got:abcdef" || resp.Trailer.Get("X-Length") != "6" {
		t.Fatalf("body %q trailer %q", body, resp.Trailer.Get("X-Length"))
	}
	if sp := rec.next(t); sp.BytesIn != 6 || sp.BytesOut != 10 {
		t.Errorf("payload bytes in %d out %d, want 6 and 10", sp.BytesIn, sp.BytesOut)
	}
}

func TestH1NoBodyResponsesDoNotHang(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	c := &http.Client{Timeout: 5 * time.Second}
	for _, tc := range []struct{ method, path string }{{"HEAD", "/x"}, {"GET", "/204"}, {"GET", "/304"}, {"GET", "/x"}} {
		req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestH1ExpectContinueAndHTTP10(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "len=%d", len(b))
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue first, got %q", line)
	}
	br.ReadString('\n') // blank line
	io.WriteString(c, "data")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "len=4" {
		t.Fatalf("body %q", b)
	}
	// HTTP/1.0 without keep-alive: answered, then closed.
	out := rawExchange(t, addr, "GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
	if !strings.Contains(out, "len=0") {
		t.Fatalf("HTTP/1.0: %q", out)
	}
}

func TestH1PipelinedRequestsAnsweredInOrder(t *testing.T) {
	s := New(Options{Recorder: newMemRecorder()})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	out := rawExchange(t, addr, "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if i, j := strings.Index(out, "/one"), strings.Index(out, "/two"); i < 0 || j < i {
		t.Fatalf("responses out of order or missing:\n%s", out)
	}
}

func TestH1StaleUpstreamConnectionIsRetried(t *testing.T) {
	s := New(Options{Recorder: newMemRecorder()})
	// An upstream that answers one request per connection, then closes it
	// without saying so (as a server timing out an idle connection does).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for n := 0; ; n++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err == nil {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nc%d", n)
			}
			c.Close()
		}
	}()
	addr := front(t, s, Route{Service: "svc", Upstream: l.Addr().String()})[0]
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 3 {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 2 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
}

func TestH1BadRequestGets400(t *testing.T) {
	s := New(Options{Recorder: newMemRecorder()})
	addr := front(t, s, Route{Service: "svc", Upstream: "127.0.0.1:1", Protocol: ProtoHTTP})[0]
	out := rawExchange(t, addr, "GET / HTTP/1.1\r\nno colon here\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400") {
		t.Fatalf("got %q", out)
	}
}

func TestUpstreamDownGivesClearError(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec, HoldFor: 100 * time.Millisecond})
	addr := front(t, s, Route{Service: "payments", Upstream: freeAddr(t)})[0]
	resp, err := http.Get("http://" + addr + "/pay")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), "payments refused the connection") {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	if sp := rec.next(t); !sp.Failed() || !strings.Contains(sp.Error, "payments") {
		t.Errorf("span %+v", sp)
	}
}

func TestBodyCaptureIsOptInAndCapped(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "response-body")
	}))
	defer up.Close()
	for _, capBytes := range []int{0, 4} {
		rec := newMemRecorder()
		s := New(Options{Recorder: rec, CaptureBodies: capBytes})
		addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
		resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader("request-body"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		sp := rec.next(t)
		wantReq, wantResp := "", ""
		if capBytes == 4 {
			wantReq, wantResp = "requ", "resp"
		}
		if sp.ReqBody != wantReq || sp.RespBody != wantResp {
			t.Errorf("capture %d: bodies %q %q, want %q %q", capBytes, sp.ReqBody, sp.RespBody, wantReq, wantResp)
		}
	}
}

// client is one kept-alive client connection to the proxy.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends a raw request and reads the response to it, body included.
func (cl *client) do(raw, method string) (*http.Response, string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, raw); err != nil {
		cl.t.Fatal(err)
	}
	return cl.read(method)
}

func (cl *client) read(method string) (*http.Response, string) {
	cl.t.Helper()
	resp, err := http.ReadResponse(cl.br, &http.Request{Method: method})
	if err != nil {
		cl.t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		cl.t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }

// rawUpstream serves each connection with handle(conn, n), n counting
// connections from 0.
func rawUpstream(t *testing.T, handle func(c net.Conn, br *bufio.Reader, n int)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	go func() {
		for n := 0; ; n++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(c, bufio.NewReader(c), n)
			})
		}
	}()
	return l.Addr().String()
}

func readRequest(br *bufio.Reader) (*http.Request, error) {
	r, err := http.ReadRequest(br)
	if err == nil {
		io.Copy(io.Discard, r.Body)
	}
	return r, err
}

// A configured list widens the defaults; only "!word" narrows them, one
// word at a time.
func TestRedactorAddsToTheDefaults(t *testing.T) {
	r := NewRedactor([]string{"X-Custom", "!cookie"})
	for name, want := range map[string]bool{
		"X-Custom-Header": true, "Authorization": true, "X-Api-Key": true, "Set-Cookie": true,
		"Cookie": false, "Accept": false,
	} {
		if got := r.redacts(name); got != want {
			t.Errorf("with [X-Custom, !cookie]: %s redacted %v, want %v", name, got, want)
		}
	}
	d := NewRedactor(nil)
	for _, name := range []string{"X-Session-Id", "Passwd", "X-Credentials", "Proxy-Authorization"} {
		if !d.redacts(name) {
			t.Errorf("by default, %s is not redacted", name)
		}
	}
}

// Header names come from clients: the redactor's decisions stay right for
// any number of them, while its cache stops growing.
func TestRedactorCacheIsBounded(t *testing.T) {
	r := NewRedactor(nil)
	for i := range maxCachedNames + 1000 {
		name := fmt.Sprintf("X-Made-Up-%d", i)
		if r.redacts(name) {
			t.Fatalf("%s redacted", name)
		}
		if secret := fmt.Sprintf("X-Api-Token-%d", i); !r.redacts(secret) {
			t.Fatalf("%s not redacted", secret)
		}
	}
	n := len(*r.known.Load()) + len(r.newer)
	if n != maxCachedNames {
		t.Errorf("the cache holds %d names; want it full at %d, no more", n, maxCachedNames)
	}
}

// A name asked for again is answered from the published map, even when
// the batch it joined is not full: a stable header set must not stay on
// the locked path.
func TestRedactorPublishesARepeatedName(t *testing.T) {
	r := NewRedactor(nil)
	for i := range 40 {
		r.redacts(fmt.Sprintf("X-Name-%d", i))
	}
	r.redacts("X-Late")
	r.redacts("X-Late")
	if _, ok := (*r.known.Load())["X-Late"]; !ok {
		t.Fatal("a name asked for twice is not published")
	}
}

// A connection's memory of its header names (seenNames) only saves work:
// heads whose names move, change case or change between requests record
// the same names and redactions as heads read without it, and nothing it
// remembers points into a head, which is reused.
func TestRecordedHeadersWithAConnectionsSeenNames(t *testing.T) {
	r := NewRedactor(nil)
	heads := [][]field{
		{{"host", "a"}, {"authorization", "Bearer 1"}, {"x-seq", "1"}},
		{{"host", "a"}, {"authorization", "Bearer 2"}, {"x-seq", "2"}},
		{{"Authorization", "Bearer 3"}, {"Host", "a"}, {"X-Seq", "3"}},
		{{"host", "a"}, {"x-seq", "4"}, {"x-api-token", "t"}, {"cookie", "c=1"}},
		{{"host", "a"}},
		{{"host", "a"}, {"x-seq", "6"}, {"authorization", "Bearer 6"}},
	}
	var seen seenNames
	text := make([]byte, 256)
	for i, h := range heads {
		// The names live in a buffer that the next head overwrites, as
		// in a reused span's text.
		at := 0
		for j := range h {
			n := copy(text[at:], h[j].name)
			h[j].name = unsafe.String(&text[at], n)
			at += n
		}
		want := r.fields(nil, h, nil)
		for j := range want {
			want[j].Name = strings.Clone(want[j].Name)
		}
		got := r.fields(nil, h, &seen)
		copy(text, strings.Repeat("#", len(text)))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("head %d recorded %v with the connection's names, %v without", i, got, want)
		}
		for _, x := range got {
			if x.Name != textproto.CanonicalMIMEHeaderKey(x.Name) {
				t.Errorf("head %d: recorded name %q is not canonical", i, x.Name)
			}
			if secret := x.Name == "Authorization" || x.Name == "X-Api-Token" || x.Name == "Cookie"; secret != (x.Value == Redacted) {
				t.Errorf("head %d: %s: %q", i, x.Name, x.Value)
			}
		}
	}
	for _, n := range seen {
		if n.raw == "" || n.canonical == "" {
			continue
		}
		if strings.Contains(n.raw, "#") {
			t.Errorf("the connection remembers %q, a name that changed under it", n.raw)
		}
	}
}

// A service that will not come back by itself (stopped on request, or
// exited for good) is answered for at once, with why, on every path; a
// request already held for it gives up; cleared, requests are held again.
func TestDownServiceIsAnsweredAtOnceWithWhy(t *testing.T) {
	rec := newMemRecorder()
	// Held requests would wait a minute: a prompt answer is the test.
	s := New(Options{Recorder: rec, HoldFor: time.Minute})
	upstream := freeAddr(t) // nothing listens there
	addrs := front(t, s,
		Route{Service: "orders", Upstream: upstream, Protocol: ProtoHTTP},
		Route{Service: "orders", Upstream: upstream, Protocol: ProtoTCP})
	const why = "stopped (`devstack start orders` starts it again)"
	want := "orders is " + why
	s.SetDown("orders", why)

	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	clients := map[string]*http.Client{
		"http/1.1": {Timeout: 20 * time.Second},
		"h2c":      {Timeout: 20 * time.Second, Transport: &http.Transport{Protocols: &h2}},
	}
	for name, c := range clients {
		for i := range 2 { // the second on a kept-alive connection
			resp, err := c.Get("http://" + addrs[0] + "/orders")
			if err != nil {
				t.Fatalf("%s request %d: %v", name, i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || !strings.Contains(string(b), want) {
				t.Errorf("%s request %d: %d %q, want 503 saying %q", name, i, resp.StatusCode, b, want)
			}
			if sp := rec.next(t); sp.Error != want {
				t.Errorf("%s request %d: span error %q, want %q", name, i, sp.Error, want)
			}
		}
	}
	c, err := net.DialTimeout("tcp", addrs[1], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("PING\r\n"))
	if sp := rec.next(t); sp.Protocol != "tcp" || sp.Error != want {
		t.Errorf("tcp span %+v, want error %q", sp, want)
	}
	c.Close()

	// Held while the service may be coming back, then marked down.
	s.SetDown("orders", "")
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
	select {
	case got := <-answered:
		t.Fatalf("answered while the service might be coming back: %s", got)
	default:
	}
	s.SetDown("orders", "exited with code 1, and its restart policy does not restart it")
	select {
	case got := <-answered:
		if !strings.HasPrefix(got, "503 ") || !strings.Contains(got, "orders is exited with code 1") {
			t.Errorf("held request: %s", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the held request was not answered once the service was down")
	}
}

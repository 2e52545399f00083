package proxy

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Slow and idle clients are let go: a client that trickles a head gets
// 408 once HeaderTimeout has passed since it began, however it keeps
// sending; a kept-alive connection that sends nothing is closed after
// IdleTimeout; on a new connection (goroutine path) as on one the event
// loop serves. Meanwhile the proxy answers others.
func TestSlowAndIdleClientsAreLetGo(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	const header, idle = 400 * time.Millisecond, 600 * time.Millisecond
	s := New(Options{Recorder: newMemRecorder(), HeaderTimeout: header, IdleTimeout: idle})
	addr := front(t, s, Route{Service: "api", Upstream: hostOf(up.URL), Protocol: ProtoHTTP})[0]

	dial := func(warm bool) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		if warm {
			io.WriteString(c, get("/warm"))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
		}
		return c, br
	}
	// The proxy's timers start when it accepts or finishes an answer, a
	// moment before the client's clock below starts: the lower bounds
	// leave that moment room on a loaded machine.
	for _, warm := range []bool{false, true} {
		// A trickled head: a byte at a time, faster than any idle timer,
		// never ending.
		c, br := dial(warm)
		start := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			io.WriteString(c, "GET /slow HTTP/1.1\r\n")
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := io.WriteString(c, "X"); err != nil {
					return
				}
			}
		})
		resp, err := http.ReadResponse(br, nil)
		close(stop)
		wg.Wait()
		if err != nil || resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("kept alive: %v: a trickled head got %v (%v), want 408", warm, resp, err)
		} else if d := time.Since(start); d < header*3/4 || d > 10*header {
			t.Errorf("kept alive: %v: a trickled head was cut after %v; HeaderTimeout is %v", warm, d, header)
		}

		// An idle connection: closed, without an answer.
		c, br = dial(warm)
		start = time.Now()
		if n, err := br.Read(make([]byte, 1)); err != io.EOF || n != 0 {
			t.Errorf("kept alive: %v: an idle connection read %d bytes, %v; want it closed", warm, n, err)
		} else if d := time.Since(start); d < idle*3/4 || d > 10*idle {
			t.Errorf("kept alive: %v: an idle connection was closed after %v; IdleTimeout is %v", warm, d, idle)
		}
	}
	// And the proxy serves as before.
	resp, err := http.Get("http://" + addr + "/after")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("after the slow clients: %d %q", resp.StatusCode, body)
	}
}

// Connections that would eat into the file descriptors kept in reserve
// are closed at once, and the failure is logged a bounded number of
// times, not once per connection.
func TestConnectionsBeyondTheReserveAreRefusedAndLoggedBoundedly(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	var logs syncBuf
	s := New(Options{Recorder: newMemRecorder(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	// The limit as if the process had few descriptors left: the next
	// accepted ones are beyond it.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c0, _ := net.Dial("tcp", probe.Addr().String())
	a0, _ := probe.Accept()
	fd0 := -1
	if rc, err := a0.(*net.TCPConn).SyscallConn(); err == nil {
		rc.Control(func(d uintptr) { fd0 = int(d) })
	}
	c0.Close()
	a0.Close()
	probe.Close()
	s.fds = fdLimit{limit: fd0 + 100, reserve: 80} // room for about 20 descriptors above fd0
	addr := front(t, s, Route{Service: "api", Upstream: hostOf(up.URL), Protocol: ProtoHTTP})[0]

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refused := 0
	for range 200 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost:") // a partial head, held
	}
	// The refused are closed already (the proxy closed them on accept);
	// the others wait for a head that does not come.
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			refused++ // closed (EOF) or reset
		}
	}
	if refused < 150 {
		t.Errorf("%d of 200 connections past the reserve were refused; want nearly all", refused)
	}
	if n := strings.Count(logs.String(), "refusing connections"); n < 1 || n > 10 {
		t.Errorf("the refusals were logged %d times; want once or a few (rate-limited)\n%s", n, logs.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// On a non-loopback address (the Docker bridge's, where every container
// on the host can connect), only the addresses AllowRemote accepts are
// served; loopback clients always are.
func TestOnlyAllowedRemoteAddressesAreServed(t *testing.T) {
	var local netip.Addr
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(pn.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				local = ip.Unmap()
				break
			}
		}
	}
	if !local.IsValid() {
		t.Skip("no non-loopback IPv4 address on this host to connect from")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	var logs syncBuf
	var allow atomic.Bool
	var asked atomic.Int32
	s := New(Options{Recorder: newMemRecorder(), Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		AllowRemote: func(ip netip.Addr) bool { asked.Add(1); return ip == local && allow.Load() }})
	l, err := net.Listen("tcp", net.JoinHostPort(local.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	bridge := l.Addr().String()
	l.Close()
	addrs2 := front(t, s, Route{Service: "api", Upstream: hostOf(up.URL), Protocol: ProtoHTTP, Listen: bridge},
		Route{Service: "api", Upstream: hostOf(up.URL), Protocol: ProtoHTTP})
	from := func(addr string) (string, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local.AsSlice()}, Timeout: 5 * time.Second}
		if strings.HasPrefix(addr, "127.") {
			d.LocalAddr = nil
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, get("/"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	if body, err := from(addrs2[0]); err == nil {
		t.Errorf("a client the gate refuses was served: %q", body)
	}
	if n := asked.Load(); n == 0 {
		t.Error("the gate was not asked")
	}
	if !strings.Contains(logs.String(), "not one of the project's containers") {
		t.Errorf("the refusal was not logged:\n%s", logs.String())
	}
	allow.Store(true)
	if body, err := from(addrs2[0]); err != nil || body != "ok" {
		t.Errorf("a client the gate allows: %q, %v", body, err)
	}
	asked.Store(0)
	if body, err := from(addrs2[1]); err != nil || body != "ok" || asked.Load() != 0 {
		t.Errorf("a loopback client: %q, %v (the gate asked %d times)", body, err, asked.Load())
	}
}

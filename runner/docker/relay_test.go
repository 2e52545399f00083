package docker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParseRelay(t *testing.T) {
	for _, tt := range []struct {
		in    string
		want  Relay
		wrong string
	}{
		{in: "8080=172.17.0.1:18082", want: Relay{Port: 8080, To: "172.17.0.1:18082", Proxy: true}},
		{in: "5432=devstack-real-db:5432", want: Relay{Port: 5432, To: "devstack-real-db:5432", Proxy: true}},
		{in: "8080", wrong: "want PORT=HOST:PORT"},
		{in: "0=h:1", wrong: "is not a port"},
		{in: "70000=h:1", wrong: "is not a port"},
		{in: "80=nohostport", wrong: "missing port"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRelay(tt.in, true)
			if tt.wrong != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wrong) {
					t.Fatalf("ParseRelay(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wrong)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRelay(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q; want %q", got.String(), tt.in)
			}
		})
	}
}

// addrConn is a net.Conn with given addresses, for proxyLine.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func TestProxyLine(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(mustAddrPort(t, s)) }
	for _, tt := range []struct {
		name          string
		remote, local net.Addr
		want          string
	}{
		{"ipv4", tcp("172.18.0.3:41000"), tcp("172.18.0.4:8080"), "PROXY TCP4 172.18.0.3 172.18.0.4 41000 8080\r\n"},
		{"mapped ipv4", tcp("[::ffff:10.0.0.2]:5"), tcp("[::ffff:10.0.0.9]:80"), "PROXY TCP4 10.0.0.2 10.0.0.9 5 80\r\n"},
		{"ipv6", tcp("[fd00::2]:41000"), tcp("[fd00::3]:8080"), "PROXY TCP6 fd00::2 fd00::3 41000 8080\r\n"},
		{"mixed", tcp("10.0.0.2:5"), tcp("[fd00::3]:80"), "PROXY UNKNOWN\r\n"},
		{"not tcp", &net.UnixAddr{Name: "x"}, tcp("10.0.0.9:80"), "PROXY UNKNOWN\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := proxyLine(addrConn{local: tt.local, remote: tt.remote}); got != tt.want {
				t.Errorf("proxyLine = %q; want %q", got, tt.want)
			}
		})
	}
}

// ambassadorUnderTest runs RunAmbassador on loopback with one relay per
// destination and returns the address of each listener.
func ambassadorUnderTest(t *testing.T, o AmbassadorOptions) (addrs []string, stop func() error) {
	t.Helper()
	o.Host = "127.0.0.1"
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan []net.Addr, 1)
	o.Ready = func(a []net.Addr) { ready <- a }
	done := make(chan error, 1)
	go func() { done <- RunAmbassador(ctx, o) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("RunAmbassador did not return within 10s of its context ending")
		}
	})
	select {
	case a := <-ready:
		for _, x := range a {
			addrs = append(addrs, x.String())
		}
	case err := <-done:
		t.Fatalf("RunAmbassador: %v", err)
	}
	t.Cleanup(func() { _ = stop() })
	return addrs, stop
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func accept(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("accepting: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Every relayed connection must start with a PROXY line naming the caller
// and the ambassador, carry the bytes both ways, and pass each end of
// stream on as a half-close, so request-then-shutdown protocols work.
func TestAmbassadorRelaysWithProxyLine(t *testing.T) {
	up := listen(t)
	addrs, stop := ambassadorUnderTest(t, AmbassadorOptions{Relays: []Relay{{To: up.Addr().String(), Proxy: true}}})

	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()

	s := accept(t, up)
	s.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(s)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the PROXY line: %v", err)
	}
	if want := proxyLine(addrConn{local: c.RemoteAddr(), remote: c.LocalAddr()}); line != want {
		t.Errorf("PROXY line = %q; want %q (the caller, then the ambassador)", line, want)
	}
	body, err := io.ReadAll(br) // ends only if the half-close came through
	if err != nil || string(body) != "ping" {
		t.Fatalf("upstream read %q, %v; want ping then end of stream", body, err)
	}
	if _, err := io.WriteString(s, "pong"); err != nil {
		t.Fatal(err)
	}
	s.(*net.TCPConn).CloseWrite()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	back, err := io.ReadAll(c)
	if err != nil || string(back) != "pong" {
		t.Fatalf("caller read %q, %v; want pong then end of stream", back, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A direct relay must carry the bytes as they are, with no PROXY line.
func TestAmbassadorDirect(t *testing.T) {
	up := listen(t)
	addrs, _ := ambassadorUnderTest(t, AmbassadorOptions{Relays: []Relay{{To: up.Addr().String()}}})
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "raw")
	c.(*net.TCPConn).CloseWrite()
	s := accept(t, up)
	s.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "raw" {
		t.Fatalf("upstream read %q, %v; want exactly raw", got, err)
	}
}

// A destination that refuses must make the caller fail at once, with a
// reset, rather than see an empty answer or hang.
func TestAmbassadorUnreachable(t *testing.T) {
	l := listen(t)
	dead := l.Addr().String()
	l.Close()
	addrs, _ := ambassadorUnderTest(t, AmbassadorOptions{Relays: []Relay{{To: dead, Proxy: true}}})
	c, err := net.Dial("tcp", addrs[0])
	if err == nil {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
	} // else the reset came before the dial could report success
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read from a relay to a closed port = %v; want a connection reset", err)
	}
}

// At MaxConns, a further caller waits (in the backlog) until a slot frees.
func TestAmbassadorBoundsConnections(t *testing.T) {
	up := listen(t)
	addrs, _ := ambassadorUnderTest(t, AmbassadorOptions{Relays: []Relay{{To: up.Addr().String()}}, MaxConns: 1})
	first, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	firstUp := accept(t, up)
	second, err := net.Dial("tcp", addrs[0]) // the kernel completes it
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	up.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
	if c, err := up.Accept(); err == nil {
		c.Close()
		t.Fatal("a second connection was relayed while MaxConns=1 was in use")
	} else if !isTimeout(err) {
		t.Fatal(err)
	}
	first.Close()
	firstUp.Close() // both ends gone: the slot frees
	accept(t, up)   // and takes the waiting caller
}

// When its context ends (SIGTERM), the ambassador must stop accepting,
// give connections in flight Drain to finish, then close them and return.
func TestAmbassadorShutdown(t *testing.T) {
	up := listen(t)
	addrs, stop := ambassadorUnderTest(t, AmbassadorOptions{Relays: []Relay{{To: up.Addr().String()}}, Drain: 100 * time.Millisecond})
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	accept(t, up) // an idle connection that never ends by itself
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the caller's connection is still open after shutdown: %v", err)
	}
	if c, err := net.Dial("tcp", addrs[0]); err == nil {
		c.Close()
		t.Error("the ambassador still accepts after shutdown")
	}
}

// A port that cannot be bound must fail the start, naming the relay.
func TestAmbassadorPortTaken(t *testing.T) {
	taken := listen(t)
	port := uint16(taken.Addr().(*net.TCPAddr).Port)
	err := RunAmbassador(t.Context(), AmbassadorOptions{Host: "127.0.0.1", Relays: []Relay{{Port: port, To: "127.0.0.1:1"}}})
	if err == nil || !strings.Contains(err.Error(), "listening for") {
		t.Fatalf("RunAmbassador on a taken port = %v; want a listening error", err)
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The ambassador program: what `devstack ambassador` runs inside an
// ambassador container (see ambassador.go for the container itself).
//
//	caller ──orders:8080──▶ ambassador :8080 ──"PROXY TCP4 caller …"──▶ proxy <gateway>:18082 ──▶ orders
//
// It is a plain TCP relay, one listener per port: the proxy does all the
// protocol work and the recording, and learns from the PROXY protocol v1
// line which container called.

// ReadyLine is what the ambassador prints once every listener is bound.
// The backend waits for it before it reports the service started, so
// that a dependent never finds the name answering with a refusal.
const ReadyLine = "devstack ambassador ready"

// Relay is one listener of an ambassador.
type Relay struct {
	// Port is the port listened on: a target port of the service.
	Port uint16
	// To is where connections go, host:port.
	To string
	// Proxy sends a PROXY protocol v1 line naming the caller before the
	// caller's bytes (the devstack proxy reads it); without it the bytes
	// go as they are.
	Proxy bool
}

// String is the flag form, PORT=HOST:PORT.
func (r Relay) String() string { return strconv.Itoa(int(r.Port)) + "=" + r.To }

// ParseRelay parses PORT=HOST:PORT, the value of --relay and --direct.
func ParseRelay(s string, proxy bool) (Relay, error) {
	port, to, ok := strings.Cut(s, "=")
	if !ok {
		return Relay{}, fmt.Errorf("relay %q: want PORT=HOST:PORT", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return Relay{}, fmt.Errorf("relay %q: %q is not a port", s, port)
	}
	if _, _, err := net.SplitHostPort(to); err != nil {
		return Relay{}, fmt.Errorf("relay %q: %w", s, err)
	}
	return Relay{Port: uint16(p), To: to, Proxy: proxy}, nil
}

// AmbassadorOptions configure RunAmbassador.
type AmbassadorOptions struct {
	// Relays are the ports to listen on and where each goes. Required.
	Relays []Relay
	// Host is the address listened on; "" (the default) is every address
	// of the container.
	Host string
	// Ready is called once every listener is bound, with their addresses
	// in the order of Relays; may be nil.
	Ready func(addrs []net.Addr)
	// Logger receives one line per failed connection; nil discards.
	Logger *slog.Logger
	// MaxConns bounds the connections relayed at once; beyond it new ones
	// wait in the listen backlog. Default 4096.
	MaxConns int
	// DialTimeout bounds each connection to its destination. Default 10s.
	DialTimeout time.Duration
	// Drain is how long, after ctx ends, connections in flight may take
	// to finish before they are closed. Default 2s.
	Drain time.Duration
}

// RunAmbassador binds every relay's port, calls Ready, and relays until
// ctx ends (SIGTERM, in the container). Then it stops accepting, lets the
// connections in flight finish for up to Drain, closes the rest and
// returns once every goroutine it started has ended. It fails at once
// when a port cannot be bound.
func RunAmbassador(ctx context.Context, o AmbassadorOptions) error {
	if len(o.Relays) == 0 {
		return errors.New("no relays: give at least one --relay or --direct PORT=HOST:PORT")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 4096
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.Drain <= 0 {
		o.Drain = 2 * time.Second
	}
	a := &ambassador{o: o, slots: make(chan struct{}, o.MaxConns), stop: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	var ls []net.Listener
	for _, r := range o.Relays {
		l, err := net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(int(r.Port))))
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("listening for %s: %w", r, err)
		}
		ls = append(ls, l)
	}
	// dialCtx ends the dials in flight only after the drain, not at once.
	dialCtx, cancelDials := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDials()
	var accepting sync.WaitGroup
	for k, l := range ls {
		accepting.Go(func() { a.accept(dialCtx, l, o.Relays[k]) })
	}
	if o.Ready != nil {
		addrs := make([]net.Addr, len(ls))
		for k, l := range ls {
			addrs[k] = l.Addr()
		}
		o.Ready(addrs)
	}
	<-ctx.Done()
	close(a.stop)
	for _, l := range ls {
		l.Close()
	}
	accepting.Wait()
	drained := make(chan struct{})
	go func() { a.handlers.Wait(); close(drained) }()
	t := time.NewTimer(o.Drain)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		cancelDials()
		a.closeAll()
		<-drained
	}
	return nil
}

// ambassador is the state of one RunAmbassador.
type ambassador struct {
	o        AmbassadorOptions
	slots    chan struct{} // one per connection in flight
	stop     chan struct{} // closed when ctx ends: accept no more
	handlers sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // both ends of every relayed connection
}

func (a *ambassador) accept(ctx context.Context, l net.Listener, r Relay) {
	var delay time.Duration
	for {
		select {
		case a.slots <- struct{}{}:
		case <-a.stop:
			return
		}
		c, err := l.Accept()
		if err != nil {
			<-a.slots
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: say so, back off as
			// net/http does, go on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			a.o.Logger.Warn("accepting", "port", r.Port, "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-a.stop:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		a.handlers.Go(func() {
			defer func() { <-a.slots }()
			a.relay(ctx, c, r)
		})
	}
}

// relay carries one connection: dial, PROXY line, then both directions
// until each has ended, passing each end of stream on as a half-close.
func (a *ambassador) relay(ctx context.Context, c net.Conn, r Relay) {
	if !a.track(c) {
		c.Close()
		return
	}
	defer a.untrack(c)
	dctx, cancel := context.WithTimeout(ctx, a.o.DialTimeout)
	up, err := (&net.Dialer{}).DialContext(dctx, "tcp", r.To)
	cancel()
	if err != nil {
		a.o.Logger.Warn("relaying a connection", "from", c.RemoteAddr().String(), "port", r.Port, "to", r.To, "err", err)
		abort(c)
		return
	}
	if !a.track(up) {
		up.Close()
		abort(c)
		return
	}
	defer a.untrack(up)
	if r.Proxy {
		if _, err := io.WriteString(up, proxyLine(c)); err != nil {
			a.o.Logger.Warn("relaying a connection", "from", c.RemoteAddr().String(), "port", r.Port, "to", r.To, "err", err)
			abort(c)
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(up, c)
	}()
	pipe(c, up)
	<-done
}

// pipe copies src to dst, then half-closes dst so that its reader sees
// the end of stream, as src's writer meant. On an error (a reset) both
// are closed, which also ends the opposite direction.
func pipe(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
}

// abort closes c with a reset, so the caller fails at once instead of
// reading an empty, clean end of stream.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// track registers c for closeAll; false once closeAll has run.
func (a *ambassador) track(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conns == nil {
		return false
	}
	a.conns[c] = struct{}{}
	return true
}

func (a *ambassador) untrack(c net.Conn) {
	c.Close()
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.conns, c)
}

func (a *ambassador) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

// proxyLine is the PROXY protocol v1 header for connection c: the caller
// as source, the ambassador's own address as destination.
func proxyLine(c net.Conn) string {
	src, ok1 := addrPort(c.RemoteAddr())
	dst, ok2 := addrPort(c.LocalAddr())
	family := ""
	switch {
	case !ok1 || !ok2:
	case src.Addr().Is4() && dst.Addr().Is4():
		family = "TCP4"
	case src.Addr().Is6() && dst.Addr().Is6():
		family = "TCP6"
	}
	if family == "" {
		return "PROXY UNKNOWN\r\n"
	}
	return fmt.Sprintf("PROXY %s %s %s %d %d\r\n", family, src.Addr(), dst.Addr(), src.Port(), dst.Port())
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

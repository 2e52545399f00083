package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devstack/devstack/proxy/fault"
	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// Protocol choices for a route.
const (
	ProtoAuto = "auto" // detect from the first bytes the client sends
	ProtoHTTP = "http" // HTTP/1.1 and h2c (gRPC)
	ProtoTCP  = "tcp"  // opaque bytes, one span per connection
)

// Route sends what arrives on Listen to a service's Upstream.
type Route struct {
	Service  string
	Listen   string // host:port the proxy owns, e.g. 127.0.0.1:18082
	Upstream string // host:port where the service listens
	Protocol string // ProtoAuto (default), ProtoHTTP or ProtoTCP
}

// CallerResolver names the service on the client end of a connection.
type CallerResolver interface {
	// Caller returns the service that owns the socket remote (connected to
	// local), or "" when it is not one of the stack's services. A
	// healthcheck probe devstack runs itself is trace.ProbeCaller of the
	// service it checks.
	Caller(remote, local netip.AddrPort) string
}

// ProbeWatcher is what a CallerResolver may also be: one that knows when
// devstack's own healthcheck probes run. While one does, connections are
// looked up as their first request arrives, not after it: a probe exits
// as soon as it has its answer, and its socket with it.
type ProbeWatcher interface {
	Probing() bool // an atomic load: asked on every request while set
}

// Options configure a Server.
type Options struct {
	// Recorder receives one span per hop. Required.
	Recorder trace.Recorder
	// Formats are the trace header formats written upstream
	// (default propagate.DefaultFormats).
	Formats propagate.Formats
	// NoFormats writes no trace header format at all (x-devstack.trace
	// formats: none); X-Request-ID is still passed on or generated.
	NoFormats bool
	// Redact adds header names (or fragments) to DefaultRedact, whose
	// values are not recorded; "!word" takes a default word out (see
	// NewRedactor).
	Redact []string
	// RedactQuery adds query parameter names (or name parts) to the
	// default query rule, whose values are not recorded, in the recorded
	// query and in URLs in header values; "!word" takes a default word
	// out (see NewQueryRule).
	RedactQuery []string
	// TrustProxyLine says whether a connection from this address may name
	// its real client with a PROXY protocol line. Default: only clients
	// that are not on loopback (ambassador containers on a Docker bridge),
	// so a host process cannot pass itself off as another service.
	TrustProxyLine func(netip.Addr) bool
	// CaptureBodies records the first this many bytes of request and
	// response bodies (HTTP/1.x). 0, the default, records none: bodies may
	// hold credentials that header redaction cannot see.
	CaptureBodies int
	// Callers identifies callers by socket; nil means callers are known
	// only from trace context.
	Callers CallerResolver
	// OnBrokenPropagation is called the first time a service is seen
	// calling out without the trace context it received.
	OnBrokenPropagation func(service string)
	// HoldFor is how long a request waits for a service that refuses
	// connections (restarting, or not listening yet). Default 30s.
	HoldFor time.Duration
	// ExternalHold is how long it waits for a service that the user runs
	// (SetExternal) and that is not listening: long enough for a restart
	// from an IDE. Default 10s.
	ExternalHold time.Duration
	// NoEventLoop keeps every HTTP/1 connection on the goroutine path
	// (for comparing the two; see loop_linux.go).
	NoEventLoop bool
	// DetectTimeout is how long auto-detection waits for the client's
	// first bytes before it asks the service whether it speaks first
	// (see detect.go). Default 300ms.
	DetectTimeout time.Duration
	// HeaderTimeout is how long a client has to send a whole request head
	// once it started one (nginx's client_header_timeout). A client
	// slower than that gets 408 and its connection is closed: a client
	// that trickles a head must not hold a connection, and its file
	// descriptor, for ever. Default 60s.
	HeaderTimeout time.Duration
	// IdleTimeout is how long a client connection may wait between
	// requests (or, on a port known to serve HTTP, before its first)
	// before the proxy closes it (nginx's keepalive_timeout). Default 75s.
	IdleTimeout time.Duration
	// AllowRemote says whether a connection from a non-loopback address
	// may be served (it is closed at once otherwise). With containers, the
	// proxy also listens on the host's bridge address, which every
	// container on the host reaches: the supervisor lets in only the
	// project's own containers there. Nil allows every address.
	AllowRemote func(netip.Addr) bool
	// FDReserve is how many file descriptors, below the process's limit,
	// the proxy leaves to the rest of the supervisor (control API, logs,
	// span store, health checks): a connection accepted on a descriptor
	// above the limit minus the reserve is closed at once, so that
	// clients that open connections by the thousand cannot keep `ps` and
	// `logs` from answering. Default: a tenth of the limit, at least 64.
	FDReserve int
	// Faults holds the current fault rules (the fault plugin stores new
	// ones whole); nil injects none, at the cost of a nil check per
	// request. See fault.go.
	Faults *fault.Table
	Logger *slog.Logger

	// holdWaitMs is how long an idle event loop keeps its P (see
	// defaultHoldWaitMs); 0 means the default. Tests change it.
	holdWaitMs uintptr
}

// Server is the proxy: one listener per route.
type Server struct {
	opts Options
	// spin is held by the one injected delay whose tail is spun (hold).
	spin   atomic.Bool
	probes ProbeWatcher // opts.Callers, when it watches probes
	fds    fdLimit
	// refusedRemote logs refusals of AllowRemote, rate-limited.
	refusedRemote rateLimited
	redact        *Redactor
	query         *QueryRule
	hops          *hops
	h1, h2        *http.Transport

	mu     sync.Mutex
	routes map[string]*route // by listen address
	closed bool              // Close was called
	// loops serve kept-alive HTTP/1 connections; made on first use.
	loops   atomic.Pointer[loops]
	noLoops atomic.Bool // none can be made
	// idle upstream connections, shared by the routes' client connections
	pool upstreamPool

	brokenMu sync.Mutex
	broken   map[string]bool

	// down says, by service, why it will not come back by itself (see
	// SetDown), or that the user runs it (SetExternal).
	downMu sync.Mutex
	down   map[string]away
}

// New returns a Server with no routes.
func New(opts Options) *Server {
	if opts.Formats == 0 && !opts.NoFormats {
		opts.Formats = propagate.DefaultFormats
	}
	if opts.HoldFor == 0 {
		opts.HoldFor = 30 * time.Second
	}
	if opts.ExternalHold == 0 {
		opts.ExternalHold = 10 * time.Second
	}
	if opts.DetectTimeout == 0 {
		opts.DetectTimeout = 300 * time.Millisecond
	}
	if opts.HeaderTimeout == 0 {
		opts.HeaderTimeout = 60 * time.Second
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 75 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.holdWaitMs == 0 {
		opts.holdWaitMs = defaultHoldWaitMs
	}
	probes, _ := opts.Callers.(ProbeWatcher)
	s := &Server{opts: opts, probes: probes, fds: newFDLimit(opts.FDReserve), redact: NewRedactor(opts.Redact), query: NewQueryRule(opts.RedactQuery), hops: newHops(),
		routes: map[string]*route{}, broken: map[string]bool{}, down: map[string]away{}}
	s.redact.WithQuery(s.query)
	s.h1 = &http.Transport{
		DialContext:         s.dial,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // pass bodies through as they are
		ForceAttemptHTTP2:   false,
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	s.h2 = &http.Transport{DialContext: s.dial, Protocols: &p, DisableCompression: true}
	return s
}

// Broken lists the services seen calling out without propagating the trace
// context they received.
func (s *Server) Broken() []string {
	s.brokenMu.Lock()
	defer s.brokenMu.Unlock()
	out := make([]string, 0, len(s.broken))
	for k := range s.broken {
		out = append(out, k)
	}
	return out
}

func (s *Server) markBroken(service string) {
	s.brokenMu.Lock()
	first := !s.broken[service]
	s.broken[service] = true
	s.brokenMu.Unlock()
	if first && s.opts.OnBrokenPropagation != nil {
		s.opts.OnBrokenPropagation(service)
	}
}

// SetRoutes makes routes the routing table: it listens on new addresses,
// closes removed ones and switches upstreams of existing ones in place,
// without dropping their connections. Every listener is opened before any
// change is made, so an error leaves the table as it was.
func (s *Server) SetRoutes(routes []Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]Route{}
	for _, r := range routes {
		if r.Protocol == "" {
			r.Protocol = ProtoAuto
		}
		want[r.Listen] = r
	}
	opened := map[string]net.Listener{}
	for addr, r := range want {
		if _, ok := s.routes[addr]; ok {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range opened {
				l.Close()
			}
			return fmt.Errorf("proxy for service %q: listening on %s: %w", r.Service, addr, err)
		}
		opened[addr] = l
	}
	for addr, rt := range s.routes {
		if r, ok := want[addr]; ok {
			rt.set(r)
			continue
		}
		rt.close()
		delete(s.routes, addr)
	}
	for addr, l := range opened {
		rt := s.newRoute(want[addr], l)
		s.routes[addr] = rt
		go rt.serve()
	}
	return nil
}

// eventLoops returns the Server's event loops, making them on first use;
// nil when there are none.
func (s *Server) eventLoops() *loops {
	// Asked after every exchange on the goroutine path: without loops,
	// the answer must not take the Server's lock.
	if ls := s.loops.Load(); ls != nil || s.opts.NoEventLoop || s.noLoops.Load() {
		return ls
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if ls := s.loops.Load(); ls != nil {
		return ls
	}
	ls := newLoops(s, max(1, runtime.GOMAXPROCS(0)-1))
	if ls == nil {
		s.noLoops.Store(true)
		return nil
	}
	s.loops.Store(ls)
	return ls
}

// Close stops every listener and the connections they carry.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for addr, rt := range s.routes {
		rt.close()
		delete(s.routes, addr)
	}
	if ls := s.loops.Load(); ls != nil {
		ls.stop()
	}
	s.pool.close()
	s.h1.CloseIdleConnections()
	s.h2.CloseIdleConnections()
	return nil
}

// dial connects to an upstream, retrying while it refuses connections (a
// service restarting or still starting) until ctx ends, so requests are
// held rather than failed.
func (s *Server) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, s.opts.HoldFor)
	defer cancel()
	wait := 5 * time.Millisecond
	start := time.Now()
	var refused error
	for {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil && refused != nil && ctx.Err() != nil {
			// The hold ran out during a retry: the service's answer was
			// the refusal, not a timeout (a loaded machine can spend the
			// whole hold between two attempts).
			return nil, refused
		}
		if err == nil || !isRefused(err) {
			return c, err
		}
		refused = err
		if down := s.downAt(addr); down != nil && (!down.external || time.Since(start) >= s.opts.ExternalHold) {
			down.err = err
			return nil, down
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(wait*2, 250*time.Millisecond)
	}
}

// InFlightBefore counts the requests (and TCP connections) to service
// that began before t and are not answered yet: a hot reload waits for
// them to reach zero before it stops the instance it replaced. It takes
// a lock; nothing on a request's path calls it.
func (s *Server) InFlightBefore(service string, t time.Time) int {
	return s.hops.begunBefore(service, t)
}

// SetDown says that service will not come back by itself: it was stopped
// on request, or it exited and its restart policy does not restart it.
// Why says so ("stopped", "exited with code 1"). A request for it is then
// answered at once, naming the reason, where it would otherwise be held
// for HoldFor in case the service is restarting, as a caller would see in
// production. A request already held gives up at its next try. Why ""
// clears it, when the service is started again.
func (s *Server) SetDown(service, why string) {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	if why == "" {
		delete(s.down, service)
	} else {
		s.down[service] = away{why: why}
	}
}

// downAt returns why the service listening on upstream addr is down, or
// nil when it is not known to be. Only a refused dial asks. (downMu is
// taken before mu, and nothing holding mu takes downMu.)
func (s *Server) downAt(addr string) *downError {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	if len(s.down) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rt := range s.routes {
		if cfg := rt.cfg.Load(); cfg.Upstream == addr && s.down[cfg.Service].why != "" {
			a := s.down[cfg.Service]
			return &downError{service: cfg.Service, why: a.why, external: a.external}
		}
	}
	return nil
}

// downError is a refused dial to a service that is down (see SetDown)
// or that the user runs and does not (SetExternal).
type downError struct {
	service, why string
	external     bool
	err          error // the refusal
}

func (e *downError) Error() string { return e.service + " is " + e.why }
func (e *downError) Unwrap() error { return e.err }

// refusal says why a service refused a connection: it is down (SetDown),
// or not listening, maybe not yet.
func refusal(cfg *Route, err error) string {
	if down, ok := errors.AsType[*downError](err); ok {
		return down.Error()
	}
	return fmt.Sprintf("%s refused the connection (not listening on %s)", cfg.Service, cfg.Upstream)
}

// route is one listener and what it forwards to.
type route struct {
	s        *Server
	l        net.Listener
	cfg      atomic.Pointer[Route]
	httpSrv  *http.Server
	httpConn *chanListener
	closed   atomic.Bool
	// What the port served so far decides how long detection waits for
	// a silent client (see detect.go): servedHTTP, a client spoke HTTP
	// (or h2c); serverFirst, the service spoke before its client.
	servedHTTP, serverFirst atomic.Bool
	// ctx ends when the route closes, ending held dials.
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *Server) newRoute(r Route, l net.Listener) *route {
	rt := &route{s: s, l: l}
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	rt.cfg.Store(&r)
	rt.httpConn = newChanListener(l.Addr())
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	rt.httpSrv = &http.Server{
		Handler:           rt,
		Protocols:         &p,
		ReadHeaderTimeout: s.opts.HeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, newConnInfo(c))
		},
		ErrorLog: slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelDebug),
	}
	go rt.httpSrv.Serve(rt.httpConn)
	return rt
}

func (rt *route) set(r Route) { rt.cfg.Store(&r) }

func (rt *route) close() {
	rt.closed.Store(true)
	rt.cancel()
	rt.l.Close()
	rt.httpSrv.Close()
	if ls := rt.s.loops.Load(); ls != nil {
		ls.closeRoute(rt)
	}
}

func (rt *route) serve() {
	var delay time.Duration
	var warn rateLimited
	for {
		c, err := rt.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, most likely: trying again at once
			// only spins (and logs) until some are closed. Back off as
			// net/http's server does, from 5ms to 1s.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			warn.log(rt.s.opts.Logger, "proxy: accepting connections failed; retrying", "service", rt.cfg.Load().Service, "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-rt.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		if !rt.s.fds.room(c) {
			warn.log(rt.s.opts.Logger, "proxy: refusing connections: file descriptors nearly exhausted; the rest are kept for the control API and logs",
				"service", rt.cfg.Load().Service, "limit", rt.s.fds.limit, "reserve", rt.s.fds.reserve)
			c.Close()
			continue
		}
		go rt.handle(c)
	}
}

const h2Preface = "PRI * HTTP/2.0"

func (s *Server) trustsProxyLine(c net.Conn) bool {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := a.AddrPort().Addr().Unmap()
	if s.opts.TrustProxyLine != nil {
		return s.opts.TrustProxyLine(ip)
	}
	return !ip.IsLoopback()
}

// readProxyLine consumes a PROXY protocol v1 line ("PROXY TCP4 src dst
// sport dport") and returns c with the client address it names.
func readProxyLine(c net.Conn, br *bufio.Reader) (net.Conn, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(line))
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return c, nil // "PROXY UNKNOWN": keep the socket's address
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(f[2], f[4]))
	if err != nil {
		return nil, err
	}
	return &relayedConn{Conn: c, remote: net.TCPAddrFromAddrPort(ap)}, nil
}

// relayedConn reports the client an ambassador relayed for.
type relayedConn struct {
	net.Conn
	remote net.Addr
}

func (r *relayedConn) RemoteAddr() net.Addr { return r.remote }

// looksHTTP reports whether a connection's first bytes start an HTTP/1.x
// request or the HTTP/2 preface.
func looksHTTP(b []byte) bool {
	for _, m := range httpStarts {
		n := min(len(m), len(b))
		if n >= 3 && string(b[:n]) == m[:n] {
			return true
		}
	}
	return false
}

var httpStarts = []string{"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ", "PRI * HTTP/2.0"}

// peekedConn is a conn whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// chanListener hands connections that the route accepted and classified
// to an http.Server.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

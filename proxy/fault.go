package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/devstack/devstack/proxy/fault"
	"github.com/devstack/devstack/trace"
)

// The pipeline's fault step. The current fault.Set (Options.Faults) is
// asked once per request, or once per TCP connection, and the pipeline
// carries its fault.Decision out on whichever path the request took; a
// path only supplies the few primitives (faultPath) that depend on how
// its bytes move. Nothing here runs for a service no rule names: that
// costs one atomic load and one map lookup (Set.Targets).

// faultPath is what a byte path does for the pipeline to carry out a
// Decision.
type faultPath interface {
	// wait holds the request for d; false when the client went away.
	wait(d time.Duration) bool
	// answer writes a response of the proxy's own (status and body, or
	// a gRPC status when grpc > 0) and ends the request.
	answer(status int, body string, grpc int)
	// reset closes the client connection abruptly.
	reset()
	// hang holds the request until the client goes away, or for d when
	// d > 0, then closes the connection.
	hang(d time.Duration)
}

// decide is the pipeline's fault step for the hop of sp (its callee,
// caller, protocol, method and route set) on connection ci: it fills d
// and records the faults' labels on the span, and reports whether there
// is anything to do. hdr lends the request's headers (nil for TCP).
//
// A rule may name the calling service, so a caller the link did not need
// is looked up now (once per connection, only for a service with rules,
// and never on an event loop: it hands such requests over).
func (s *Server) decide(sp *trace.Span, ci *connInfo, hdr fault.Headers, d *fault.Decision) bool {
	set := s.faults()
	if !set.Targets(sp.Callee) {
		return false
	}
	if sp.Caller == "" && ci != nil && s.opts.Callers != nil {
		sp.Caller = ci.resolve(s.opts.Callers)
	}
	req := fault.Req{Service: sp.Callee, Caller: sp.Caller, TCP: sp.Protocol == "tcp", Method: sp.Method, Path: sp.Route, Header: hdr}
	if !set.Decide(&req, d) {
		return false
	}
	sp.Faults = d.AppendLabels(sp.Faults[:0])
	return true
}

// faults is the current fault set; nil (no faults) without a Table.
func (s *Server) faults() *fault.Set {
	if s.opts.Faults == nil {
		return nil
	}
	return s.opts.Faults.Load()
}

// faultActive reports whether a fault may apply to service: an event loop
// hands such requests to the goroutine path, where waiting is allowed.
func (s *Server) faultActive(service string) bool { return s.faults().Targets(service) }

// inject carries out the request side of d on path p: the delay, then a
// terminal fault that acts on the request (not on its response). It
// reports whether the fault ended the request, which then goes no
// further.
func inject(sp *trace.Span, d *fault.Decision, p faultPath) (ended bool) {
	if d.Delay > 0 && !p.wait(d.Delay) {
		sp.Error = "client went away"
		return true
	}
	if d.StopOnResponse {
		return false
	}
	return stop(sp, d, p)
}

// stop carries out d's terminal fault, if any, on path p, and reports
// whether there was one.
func stop(sp *trace.Span, d *fault.Decision, p faultPath) bool {
	switch d.Stop {
	case fault.Reset, fault.PortDown:
		// A reset after a while (Toxiproxy's reset_peer timeout) holds
		// the request that long first, as a peer that dies mid-call.
		if d.Stop == fault.Reset && d.For > 0 && !p.wait(d.For) {
			sp.Error = "client went away"
			return true
		}
		sp.Error = "connection reset (injected)"
		p.reset()
	case fault.Hang, fault.Timeout:
		sp.Error = "no answer (injected " + d.Stop.String() + ")"
		p.hang(d.For)
	case fault.AbortGRPC:
		sp.Status, sp.GRPCStatus = http.StatusOK, d.Status
		p.answer(http.StatusOK, d.Body, d.Status)
	case fault.Abort:
		sp.Status = d.Status
		p.answer(d.Status, d.Body, 0)
	default:
		return false
	}
	return true
}

// slowClose holds a connection's close for d's slow-close, if any.
func slowClose(d *fault.Decision) {
	if d != nil {
		sleep(d.CloseDelay)
	}
}

// sleep waits for d (on the request's own goroutine), precisely: it
// paces bytes and holds closes.
func sleep(d time.Duration) { waitFor(nil, d, nil) }

// hold carries out an injected latency: precisely, and with the tail of
// one wait at a time spun.
func (s *Server) hold(ctx context.Context, d time.Duration) bool { return waitFor(ctx, d, &s.spin) }

// throttle paces the bytes of a response: to a rate (bandwidth), or a
// chunk at a time with a pause between (slow body). A nil *throttle paces
// nothing, at no cost.
type throttle struct {
	rate  int64 // bytes a second; 0 none
	size  int   // a slow body's chunk; 0 none
	every time.Duration
	limit int64 // bytes after which the connection closes (limit-data); 0 none
	start time.Time
	sent  int64
}

// errLimitData ends a relay once an injected limit-data was reached.
var errLimitData = errors.New("connection closed after the injected limit-data")

// newThrottle returns d's pacing of a response, or nil.
func newThrottle(d *fault.Decision) *throttle {
	if d.Rate <= 0 && d.SlowEvery <= 0 && d.LimitBytes <= 0 {
		return nil
	}
	return &throttle{rate: d.Rate, size: d.SlowChunk, every: d.SlowEvery, limit: d.LimitBytes, start: time.Now()}
}

// chunk is how many of n bytes go out at once: small, so that a slow
// rate is smooth.
func (t *throttle) chunk(n int) int {
	if t == nil {
		return n
	}
	if t.every > 0 {
		n = min(n, max(t.size, 1))
	}
	if t.rate > 0 {
		n = int(min(int64(n), max(t.rate/20, 1)))
	}
	if t.limit > 0 {
		n = int(min(int64(n), max(t.limit-t.sent, 1)))
	}
	return n
}

// exhausted reports whether a limit-data was reached: the relay stops
// and the connection closes.
func (t *throttle) exhausted() bool { return t != nil && t.limit > 0 && t.sent >= t.limit }

// pace accounts for n more bytes sent and waits until the next are due.
func (t *throttle) pace(n int) {
	if t == nil {
		return
	}
	t.sent += int64(n)
	if t.rate > 0 {
		due := t.start.Add(time.Duration(float64(t.sent) / float64(t.rate) * float64(time.Second)))
		sleep(time.Until(due))
	}
	sleep(t.every)
}

// resetConn closes c so that the peer sees a reset, not an orderly close.
func resetConn(c net.Conn) {
	for {
		switch x := c.(type) {
		case *relayedConn:
			c = x.Conn
			continue
		case *peekedConn:
			c = x.Conn
			continue
		}
		break
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// httpHeaders lends an http.Header to fault.Set.Decide.
type httpHeaders http.Header

func (h httpHeaders) Header(name string) (string, bool) {
	vs := http.Header(h).Values(name)
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

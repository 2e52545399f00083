package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// The request pipeline. Every request, on every byte path, goes through
// the same steps, each written once here (or in detect.go and fault.go):
//
//	accept → detect → decide → stamp → relay → record
//
//	accept, detect  route.handle (detect.go): what the connection carries,
//	                and which byte path serves it
//	check           checkRequest: a request head the proxy will not relay
//	                (RFC 9112 framing) is answered by clientError, the same
//	                on every path
//	decide          Server.begin: the trace context and the hop's link
//	                (in flight, inferred), then Server.decide (fault.go):
//	                the fault to inject, carried out by inject
//	stamp           propagate.AppendHeaderLines / propagate.Inject: the same ids in
//	                every format
//	relay           the byte path: net/http (h2c, gRPC, WebSocket), the
//	                goroutine HTTP/1 path (h1.go), the event loop
//	                (loop_linux.go), TCP (tcp.go); a response's facts go
//	                through Server.respond, a failure through failure
//	record          Server.finishHop
//
// A byte path only says how bytes move: where a step needs the request's
// headers, it passes them in its own form (header fields, an http.Header).

// begin is the decide step's link: from the trace context tc extracted
// from the request, it links the hop to its trace and parent, and
// registers the hop as in flight. The hop's span is sp, or a new one when
// sp is nil. It returns the context to stamp on the request sent upstream
// (propagate.Inject, or propagate.AppendHeaderLines). reqHeaders appends the
// headers to record (redacted) to a span's reused slice. target is the
// request target: the path, and the query if any.
func (s *Server) begin(sp *trace.Span, tc propagate.Context, reqHeaders func([]trace.Header) []trace.Header, ci *connInfo, callee, proto, method, target string, start time.Time) (*trace.Span, propagate.Context) {
	if sp == nil {
		sp = trace.NewSpan()
	}
	path, query, _ := strings.Cut(target, "?")
	sp.Callee, sp.Protocol, sp.Method, sp.Route, sp.GRPCStatus, sp.Start = callee, proto, method, path, -1, start
	sp.Query = s.recordQuery(sp, query)
	sp.RequestID = tc.RequestID
	sp.ReqHeaders = reqHeaders(sp.ReqHeaders[:0])
	if s.probing(ci) {
		ci.resolve(s.opts.Callers) // now, while the probe lives
	}
	if ln := s.hops.begin(&tc, sp, ci, s.opts.Callers); ln.broken {
		s.markBroken(ln.caller)
	}
	return sp, tc
}

// recordQuery returns the query to record in sp: query itself, when it
// holds nothing to redact (no copy: the store copies what it keeps), or
// the redacted form, built on the stack and kept in the span's own text
// buffer. A request without a query costs nothing here.
func (s *Server) recordQuery(sp *trace.Span, query string) string {
	if query == "" || !s.query.Hides(query) {
		return query
	}
	var buf [512]byte
	b, _ := s.query.AppendRedacted(buf[:0], query)
	return sp.Text(b)
}

// requestTarget is the path and query of a request served by net/http,
// in the form the HTTP/1 paths see it; the path alone (no allocation)
// when there is no query.
func requestTarget(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return r.URL.Path
	}
	return r.URL.Path + "?" + r.URL.RawQuery
}

// beginConn begins the hop of an opaque TCP connection. It carries no
// trace context, so it starts a trace of its own, and it is not linked
// by inference: a service opening a connection to a database while it
// serves a request has not dropped a context (it had none to pass on).
func (s *Server) beginConn(ci *connInfo, callee string, start time.Time) *trace.Span {
	sp := trace.NewSpan()
	sp.TraceID, sp.SpanID = trace.NewTraceID(nil), trace.NewSpanID(nil)
	sp.Callee, sp.Protocol, sp.GRPCStatus, sp.Start = callee, "tcp", -1, start
	sp.Caller = ci.resolve(s.opts.Callers)
	return sp
}

// respond is the relay step's record of a final response (or of a
// protocol switch): its status, its headers as recorded (respHeaders
// appends them, redacted, to the span's reused slice), whether it is a
// stream of events (SSE), and whether a body follows the head (RFC 9112
// 6.3: never after HEAD, 1xx, 204 or 304).
func (s *Server) respond(sp *trace.Span, status int, method, contentType string, respHeaders func([]trace.Header) []trace.Header) (hasBody bool) {
	sp.Status = status
	sp.RespHeaders = respHeaders(sp.RespHeaders[:0])
	if strings.HasPrefix(contentType, "text/event-stream") {
		sp.Protocol = "sse"
	}
	return method != http.MethodHead && status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// finishHop is the record step: it ends a hop and records it. The caller,
// when the link did not need it, is looked up only now, after the
// response went out and off the request's path (once per connection).
func (s *Server) finishHop(sp *trace.Span, ci *connInfo) {
	sp.Duration = time.Since(sp.Start)
	s.hops.end(sp)
	if sp.Caller == "" && ci != nil && s.opts.Callers != nil {
		sp.Caller = ci.resolve(s.opts.Callers)
	}
	s.opts.Recorder.Record(sp)
}

// mayNeedCaller reports whether linking or recording a request with trace
// context tc, on connection ci, might need the connection's caller looked
// up. It does unless the caller is known, or tc names a recent hop of ours
// (whose callee is then the caller). Most connections between services
// carry such a context, so their callers are never looked up at all.
func (s *Server) mayNeedCaller(ci *connInfo, tc *propagate.Context) bool {
	if s.opts.Callers == nil || ci == nil || ci.looked.Load() {
		return false
	}
	return !tc.Continued || !s.hops.isRecent(tc.ParentID) || s.probing(ci)
}

// probing reports whether connection ci, not looked up yet, may be a
// healthcheck probe's (one is running: see ProbeWatcher).
func (s *Server) probing(ci *connInfo) bool {
	return s.probes != nil && ci != nil && !ci.looked.Load() && s.probes.Probing()
}

// failure is how every path names a failure to hear the service once
// connected, for the span and the proxy's own answer (502).
func failure(cfg *Route, err error) (status int, msg string) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
		return http.StatusBadGateway, "connection reset by " + cfg.Service
	}
	return http.StatusBadGateway, err.Error()
}

// dialFailure is how every path names a failure to reach the service
// (503): it refused the connection (down, or not listening yet), or
// dialing it failed.
func dialFailure(cfg *Route, err error) (status int, msg string) {
	if isRefused(err) {
		return refusedStatus(err), refusal(cfg, err)
	}
	return http.StatusServiceUnavailable, "dialing " + cfg.Service + ": " + err.Error()
}

// requestError is a request the proxy will not relay: its head breaks
// HTTP/1.1's framing rules, or uses what the proxy does not implement.
// Status is 400 (or 501 for an unknown transfer coding, as RFC 9112 6.1
// asks).
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

// badRequest is a 400 requestError.
func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// checkRequest is the check step, the one place that decides whether a
// request head read by the HTTP/1 paths (the goroutine path and the event
// loop alike) may go to the service. (net/http's server checks the
// requests it reads itself.)
//
// Framing is checked as RFC 9112 asks of a server (the proxy is the
// server its clients talk to): a request whose body length two readers
// could see differently is refused, never relayed, since the service
// behind might frame it otherwise and run a request smuggled in its body
// that the proxy never saw (nor traced).
func checkRequest(req *head) error {
	if err := checkRequestLine(req.line); err != nil {
		return err
	}
	switch req.framing {
	case framingOK:
		return nil
	case framingCLAndTE:
		return badRequest("the request has both Content-Length and Transfer-Encoding; send one (RFC 9112 6.1)")
	case framingTwoCL:
		return badRequest("the request has Content-Length more than once; send it once (RFC 9112 6.3)")
	case framingChunkedNotLast:
		return badRequest("the request's Transfer-Encoding does not end with chunked, so its length cannot be known (RFC 9112 6.3)")
	case framingUnknownCoding:
		return &requestError{status: http.StatusNotImplemented, msg: "the request uses a transfer coding other than chunked, which the proxy does not implement (RFC 9112 6.1)"}
	case framingNameSpace:
		return badRequest("header %q has whitespace in its name or before its colon (RFC 9112 5.1)", req.badName)
	case framingBadChar:
		return badRequest("the value of header %q holds a NUL or a bare CR (RFC 9110 5.5)", req.badName)
	}
	return badRequest("the request's framing is broken")
}

// clientError is the answer to a request the proxy will not relay (a
// head that does not parse, or fails checkRequest), the same on every
// path: 400 or 501, never 502, as the client is at fault.
func clientError(err error) (status int, msg string) {
	var re *requestError
	if errors.As(err, &re) {
		return re.status, "devstack proxy: " + re.msg
	}
	return http.StatusBadRequest, "devstack proxy: " + err.Error()
}

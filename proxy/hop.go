package proxy

import (
	"net/http"
	"time"

	"github.com/devstack/devstack/proxy/trace"
)

// startHop begins a hop, the same way on every path: it reads the trace
// context from h, links the hop to its trace and parent, stamps h with the
// context to send upstream, and registers the hop as in flight. reqHeaders
// are the headers to record (redacted), taken before h is stamped.
func (s *Server) startHop(h http.Header, reqHeaders []trace.Header, ci *connInfo, callee, proto, method, path string, start time.Time) *trace.Span {
	tc := trace.Extract(h)
	ln := s.hops.resolve(&tc, ci, s.opts.Callers)
	if ln.broken {
		s.markBroken(ln.caller)
	}
	tc.TraceID = ln.traceID
	if ln.inferred {
		// Downstream continues the trace the caller dropped.
		tc.Continued, tc.Sampled = true, true
	}
	sp := &trace.Span{
		TraceID: tc.TraceID, SpanID: tc.SpanID, ParentID: ln.parent, Inferred: ln.inferred,
		Caller: ln.caller, Callee: callee, Protocol: proto,
		Method: method, Route: path, GRPCStatus: -1, Start: start,
		RequestID: tc.RequestID, ReqHeaders: reqHeaders,
	}
	trace.Inject(h, tc, s.opts.Formats)
	s.hops.begin(sp)
	return sp
}

// finishHop ends a hop and records it. The caller, when the link did not
// need it, is looked up only now, after the response went out and off
// the request's path (once per connection).
func (s *Server) finishHop(sp *trace.Span, ci *connInfo) {
	sp.Duration = time.Since(sp.Start)
	s.hops.end(sp)
	if sp.Caller == "" && ci != nil && s.opts.Callers != nil {
		sp.Caller = ci.resolve(s.opts.Callers)
	}
	s.opts.Recorder.Record(sp)
}

package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// startHop begins a hop, the same way on every path: from the trace
// context tc extracted from the request, it links the hop to its trace and
// parent, and registers the hop as in flight. The hop's span is sp, or a
// new one when sp is nil. It returns the context to stamp on the request
// sent upstream (propagate.Inject, or propagate.AppendHeaderLines). reqHeaders
// appends the headers to record (redacted) to a span's reused slice.
// target is the request target: the path, and the query if any.
func (s *Server) startHop(sp *trace.Span, tc propagate.Context, reqHeaders func([]trace.Header) []trace.Header, ci *connInfo, callee, proto, method, target string, start time.Time) (*trace.Span, propagate.Context) {
	if sp == nil {
		sp = trace.NewSpan()
	}
	path, query, _ := strings.Cut(target, "?")
	sp.Callee, sp.Protocol, sp.Method, sp.Route, sp.GRPCStatus, sp.Start = callee, proto, method, path, -1, start
	sp.Query = s.recordQuery(sp, query)
	sp.RequestID = tc.RequestID
	sp.ReqHeaders = reqHeaders(sp.ReqHeaders[:0])
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

// mayNeedCaller reports whether linking or recording a request with trace
// context tc, on connection ci, might need the connection's caller looked
// up. It does unless the caller is known, or tc names a recent hop of ours
// (whose callee is then the caller). Most connections between services
// carry such a context, so their callers are never looked up at all.
func (s *Server) mayNeedCaller(ci *connInfo, tc *propagate.Context) bool {
	if s.opts.Callers == nil || ci == nil || ci.looked.Load() {
		return false
	}
	return !tc.Continued || !s.hops.isRecent(tc.ParentID)
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

package trace

import (
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Span is one recorded hop through the proxy: a request (or a TCP
// connection) from a caller to a callee service.
//
// It is kept small: the store holds up to 100k of them in memory.
type Span struct {
	TraceID TraceID `json:"trace_id"`
	// SpanID is the hop's own id, sent upstream as the traceparent parent-id.
	SpanID SpanID `json:"span_id"`
	// ParentID is the span this hop nests under: the caller's in-flight hop
	// or the incoming parent-id. Zero for a root.
	ParentID SpanID `json:"parent_id"`
	// Inferred is set when the parent link was inferred because the caller
	// did not propagate trace context (broken propagation).
	Inferred bool `json:"inferred,omitempty"`
	// Candidates is the evidence of an inferred link: how many requests
	// the calling service was serving when it made the call, so how many
	// hops the call could belong to. 1 means the link is certain; more,
	// that the proxy picked one of that many (see Ambiguous). 0 when the
	// link is not inferred.
	Candidates int `json:"candidates,omitempty"`
	// pooled marks a span from NewSpan: once recorded, it is the
	// store's to reuse.
	pooled bool
	// Flags and Sampling are the W3C trace flags and the sampling decision
	// this hop sent upstream. They matter only while the hop is in flight:
	// a call its service makes without any context (an inferred link)
	// continues the trace as this hop did. They are not stored. (Next to
	// the bools, they take no room of their own.)
	Flags    byte     `json:"-"`
	Sampling Sampling `json:"-"`
	// Caller is the calling service; "" for a client outside the stack.
	Caller string `json:"caller,omitempty"`
	// Callee is the service the hop went to.
	Callee string `json:"callee"`
	// Protocol is http, h2c, grpc, websocket, sse or tcp.
	Protocol string `json:"protocol"`
	Method   string `json:"method,omitempty"`
	// Route is the request path without the query.
	Route string `json:"route,omitempty"`
	// Query is the request's query string (after '?', without it), the
	// values of credential-like parameters redacted; "" when none.
	Query string `json:"query,omitempty"`
	// Status is the HTTP status; 0 when none (TCP, or no response).
	Status int `json:"status,omitempty"`
	// GRPCStatus is the grpc-status code, -1 when the hop was not gRPC or
	// carried none.
	GRPCStatus int           `json:"grpc_status"`
	Start      time.Time     `json:"start"`
	Duration   time.Duration `json:"duration"`
	// TTFB is the time to the first response byte.
	TTFB     time.Duration `json:"ttfb,omitempty"`
	BytesIn  int64         `json:"bytes_in"`  // request body bytes (client → service)
	BytesOut int64         `json:"bytes_out"` // response body bytes (service → client)
	// Error says how the hop failed at the transport level ("connection
	// refused", "reset by peer", "client went away"); "" otherwise.
	Error string `json:"error,omitempty"`
	// Faults are the injected faults applied to the hop ("latency 300ms").
	Faults []string `json:"faults,omitempty"`
	// RequestID is the X-Request-ID the hop carried.
	RequestID string `json:"request_id,omitempty"`
	// ReqHeaders and RespHeaders are the headers, credentials redacted.
	ReqHeaders  []Header `json:"req_headers,omitempty"`
	RespHeaders []Header `json:"resp_headers,omitempty"`
	// ReqBody and RespBody are captured only when body capture is on, capped.
	ReqBody  string `json:"req_body,omitempty"`
	RespBody string `json:"resp_body,omitempty"`

	// text holds the bytes of the strings made by Text.
	text []byte
}

// spanPool holds spans a Store is done with, for NewSpan.
var spanPool = sync.Pool{New: func() any { return new(Span) }}

// NewSpan returns an empty span to fill and record. Once a Store has
// indexed it (in its own compact copy) and no subscriber was handed it,
// the span goes back to a pool, header slices included, for a later
// NewSpan: a proxy recording every hop then allocates no span per hop.
// So a span from NewSpan must not be used after it is recorded. A span
// made otherwise is never reused.
func NewSpan() *Span {
	s := spanPool.Get().(*Span)
	s.pooled = true
	return s
}

// Recycle puts a span from NewSpan back in the pool, keeping the header
// slices' room but not what they pointed to (request heads). Only the
// Recorder a span was handed to calls it, once it keeps nothing of the
// span; it does nothing to a span made otherwise.
func (s *Span) Recycle() {
	if !s.pooled {
		return
	}
	req, resp := s.ReqHeaders[:0], s.RespHeaders[:0]
	clear(req[:cap(req)])
	clear(resp[:cap(resp)])
	text := s.text[:0]
	if cap(text) > maxPooledText {
		text = nil // a huge head went through: give the memory back
	}
	*s = Span{ReqHeaders: req, RespHeaders: resp, text: text}
	spanPool.Put(s)
}

// maxPooledText bounds the text buffer a pooled span keeps.
const maxPooledText = 16 << 10

// Text returns a string with the bytes of b, made in a buffer of the
// span's own. The proxy keeps a request's and a response's head there, so
// that a hop costs no allocation for them: the buffer of a span from
// NewSpan is reused once a store has recorded the span (the store keeps
// copies of what it stores). So a string from Text, or any substring of
// it, must not be used after the span is recorded.
func (s *Span) Text(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(s.text)-len(s.text) < len(b) {
		// A new buffer: strings made in the old one keep it alive, and it
		// is never reused.
		s.text = make([]byte, 0, max(2*cap(s.text), len(b), 1024))
	}
	at := len(s.text)
	s.text = append(s.text, b...)
	return unsafe.String(&s.text[at], len(b))
}

// Header is one header field.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Failed reports whether the hop counts as an error: a transport error,
// a 5xx, or a non-OK gRPC status.
func (s *Span) Failed() bool {
	return s.Error != "" || s.Status >= 500 || s.GRPCStatus > 0
}

// Ambiguous reports whether the hop's parent link is a guess: inferred
// while its caller was serving more than one request.
func (s *Span) Ambiguous() bool { return s.Inferred && s.Candidates > 1 }

// ClientError reports whether the hop was answered with a 4xx: the
// callee refused the request as the caller made it.
func (s *Span) ClientError() bool { return s.Status >= 400 && s.Status < 500 }

// End is when the hop finished.
func (s *Span) End() time.Time { return s.Start.Add(s.Duration) }

// Recorder is the write side of the span store, used by the proxy on its
// hot path: Record must not block.
type Recorder interface {
	Record(*Span)
}

// Reader is the read side, used by the control API, the CLI and exporters.
type Reader interface {
	// Traces lists trace summaries matching q, newest first.
	Traces(q Query) []Summary
	// Trace returns the spans of one trace ordered by start, nil if unknown.
	Trace(id TraceID) []*Span
}

// Query filters traces. A trace matches when any of its spans matches
// every set field (Errors, MinDuration and Since apply to the trace).
type Query struct {
	Service     string        // a span's caller or callee
	Status      StatusRange   // a span's HTTP status is in this range
	Errors      bool          // the trace has a failed span
	MinDuration time.Duration // the trace's duration
	Since       time.Time     // the trace started at or after
	Route       string        // a span's route has this prefix
	QueryHas    string        // a span's query (as recorded, redacted) contains this
	IDPrefix    string        // the trace id, in lowercase hex, starts with this
	// Probes lists the traces of devstack's own healthcheck probes too
	// (see IsProbe), which are left out by default.
	Probes bool
	Limit  int // at most this many; 0 = 100
}

// ProbeCaller is the caller recorded on a hop that devstack's own
// healthcheck of service made (a probe of the port the proxy fronts):
// "healthcheck:orders". No service can be called that: Compose names
// have no colon.
func ProbeCaller(service string) string { return probePrefix + service }

// IsProbe reports whether caller is a ProbeCaller: the hop is devstack's
// own healthcheck traffic, not the stack's.
func IsProbe(caller string) bool { return strings.HasPrefix(caller, probePrefix) }

const probePrefix = "healthcheck:"

// Summary is one line of `devstack traces`.
type Summary struct {
	TraceID TraceID `json:"trace_id"`
	Root    string  `json:"root_service"`
	Route   string  `json:"root_route"`
	// Query is the root hop's query string, redacted as recorded.
	Query    string        `json:"root_query,omitempty"`
	Method   string        `json:"root_method,omitempty"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	Spans    int           `json:"spans"`
	Errors   int           `json:"errors"`
	// Ambiguous counts the hops whose inferred link is a guess among
	// several requests (see Span.Ambiguous).
	Ambiguous int `json:"ambiguous_links,omitempty"`
	Status    int `json:"root_status,omitempty"`
}

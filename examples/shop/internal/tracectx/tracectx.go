package tracectx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
)

// Header names defined by W3C Trace Context.
const (
	HeaderParent = "traceparent"
	HeaderState  = "tracestate"
)

// Span is this service's part of a trace.
type Span struct {
	// TraceID is 32 lowercase hex digits, shared by every hop of the trace.
	TraceID string
	// ParentID is the caller's span id, "" when this span started the trace.
	ParentID string
	// SpanID is this service's own span id: 16 lowercase hex digits, never all zero.
	SpanID string
	// Flags are the trace flags as 2 hex digits ("01" = sampled).
	Flags string
	// State is the incoming tracestate, passed through unchanged.
	State string
}

// Extract reads traceparent and tracestate from h and returns a new span that
// continues the incoming trace, or starts a new trace when there is none or
// it is malformed.
func Extract(h http.Header) Span {
	traceID, parentID, flags, ok := parse(h.Get(HeaderParent))
	if !ok {
		return Span{TraceID: randomHex(16), SpanID: randomHex(8), Flags: "01"}
	}
	// Multiple tracestate headers are one list joined by commas.
	state := strings.Join(h.Values(HeaderState), ",")
	return Span{TraceID: traceID, ParentID: parentID, SpanID: randomHex(8), Flags: flags, State: state}
}

// Traceparent is the traceparent value for calls made inside s.
func (s Span) Traceparent() string {
	return "00-" + s.TraceID + "-" + s.SpanID + "-" + s.Flags
}

// Inject writes s as the parent of an outbound request.
func (s Span) Inject(h http.Header) {
	h.Set(HeaderParent, s.Traceparent())
	if s.State != "" {
		h.Set(HeaderState, s.State)
	}
}

// parse splits a traceparent value. It accepts version 00 exactly and, for
// forward compatibility, any later version whose first four fields parse.
func parse(v string) (traceID, parentID, flags string, ok bool) {
	v = strings.TrimSpace(v)
	if len(v) < 55 || (len(v) > 55 && (v[:2] == "00" || v[55] != '-')) {
		return "", "", "", false
	}
	version, traceID, parentID, flags := v[0:2], v[3:35], v[36:52], v[53:55]
	if v[2] != '-' || v[35] != '-' || v[52] != '-' || version == "ff" {
		return "", "", "", false
	}
	for _, f := range []string{version, traceID, parentID, flags} {
		if !isLowerHex(f) {
			return "", "", "", false
		}
	}
	if allZero(traceID) || allZero(parentID) {
		return "", "", "", false
	}
	return traceID, parentID, flags, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool { return strings.Trim(s, "0") == "" }

// randomHex returns n random bytes as hex, retrying in the (astronomically
// unlikely) case that they are all zero, which the spec forbids.
func randomHex(n int) string {
	b := make([]byte, n)
	for {
		rand.Read(b) // never returns an error; crashes the program on failure
		if s := hex.EncodeToString(b); !allZero(s) {
			return s
		}
	}
}

type ctxKey struct{}

// NewContext returns ctx carrying s.
func NewContext(ctx context.Context, s Span) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext returns the span in ctx, if any.
func FromContext(ctx context.Context) (Span, bool) {
	s, ok := ctx.Value(ctxKey{}).(Span)
	return s, ok
}

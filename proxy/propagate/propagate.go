package propagate

import (
	"net/http"

	"github.com/devstack/devstack/trace"
)

// Canonical header keys, as net/http stores them. Extract and Inject index
// http.Header directly with these, which avoids canonicalising (and
// allocating) on every lookup.
const (
	headerTraceParent = "Traceparent"
	headerTraceState  = "Tracestate"
	headerBaggage     = "Baggage"
	headerSentryTrace = "Sentry-Trace"
	headerB3          = "B3"
)

// Context is the trace context of one proxy hop: what Extract read from the
// incoming request plus the hop's own new span id, and what Inject writes on
// the outgoing request.
type Context struct {
	// TraceID is the incoming trace id, or a new random one.
	TraceID trace.TraceID
	// SpanID is this hop's new span id; Inject writes it as the parent id
	// (traceparent parent-id, sentry-trace span id, B3 SpanId).
	SpanID trace.SpanID
	// ParentID is the incoming parent span id, zero for a new trace. Inject
	// writes it only as B3 ParentSpanId.
	ParentID trace.SpanID
	// Sampled is the sampling decision: true to record. A trace started by
	// Extract is sampled, since devstack records every hop.
	Sampled bool
	// Debug is B3's forced-trace decision. It implies Sampled.
	Debug bool
	// Deferred means the caller sent ids without a decision (B3 or
	// sentry-trace); Sampled is then false. Inject keeps the decision
	// deferred in B3 and sentry-trace and writes sampled=0 in traceparent,
	// which has no deferred state.
	Deferred bool
	// Flags are the W3C trace-flags. Extract keeps the known bits
	// (FlagSampled, FlagRandom) and sets FlagRandom on traces it starts.
	// Inject clears reserved bits and derives FlagSampled from Sampled and
	// Debug.
	Flags byte
	// TraceState is the normalised incoming tracestate (see
	// ParseTraceState), only when the context came from traceparent.
	TraceState string
	// Baggage is the normalised incoming baggage (see ParseBaggage), kept
	// whatever format the context came from.
	Baggage string
	// RequestID is the incoming X-Request-ID unchanged, or a new UUID.
	RequestID string
	// Continued reports whether an incoming trace context was found.
	Continued bool
	// Source is the single format the context came from, or 0 when Extract
	// started a new trace.
	Source Formats
}

// Sampling returns the decision held by Sampled, Debug and Deferred.
func (c Context) Sampling() trace.Sampling {
	switch {
	case c.Debug:
		return trace.SamplingDebug
	case c.Sampled:
		return trace.SamplingAccept
	case c.Deferred:
		return trace.SamplingDeferred
	}
	return trace.SamplingDeny
}

// SetSampling sets Sampled, Debug and Deferred to hold s.
func (c *Context) SetSampling(s trace.Sampling) {
	c.Sampled = s.Sampled()
	c.Debug = s == trace.SamplingDebug
	c.Deferred = s == trace.SamplingDeferred
}

// Extract reads the trace context of an incoming request's headers. The first format that holds a
// valid context wins:
//
//  1. traceparent (exactly one header field; several mean invalid), with
//     tracestate;
//  2. sentry-trace;
//  3. b3 (single header);
//  4. X-B3-* (multi header).
//
// A malformed header is skipped and the next format tried. If none holds a
// context, a new random trace id is made with FlagRandom set; it is sampled
// unless a b3 header carried a decision without ids (b3: 0). The returned
// SpanID is always a fresh non-zero id for this hop. Baggage and
// X-Request-ID are read whatever the source; a missing request id is
// generated.
//
// In the common case (valid canonical headers, request id present) Extract
// does not allocate.
func Extract(h Headers) Context { return extract(h, nil) }

// ExtractFor is Extract for the request of span sp: a request id it
// generates is made in sp's text (see Span.Text), not allocated, and must
// not be used once sp is recorded.
func ExtractFor(h Headers, sp *trace.Span) Context { return extract(h, sp) }

func extract(h Headers, sp *trace.Span) Context {
	var c Context
	decided := false // a decision arrived without ids
	if v := h.Values(headerTraceParent); len(v) == 1 {
		if tp, ok := ParseTraceParent(v[0]); ok {
			c.TraceID, c.ParentID = tp.TraceID, tp.ParentID
			c.Flags = tp.Flags & knownFlags
			c.Sampled = tp.Sampled()
			c.Source = FormatW3C
			// The spec forbids reading tracestate without a valid traceparent.
			c.TraceState = normalizeTraceState(h.Values(headerTraceState))
		}
	}
	if c.Source == 0 {
		if v := h.Values(headerSentryTrace); len(v) > 0 {
			if st, ok := ParseSentryTrace(v[0]); ok {
				c.TraceID, c.ParentID = st.TraceID, st.SpanID
				c.SetSampling(st.Sampling)
				c.Source = FormatSentry
			}
		}
	}
	if c.Source == 0 {
		if v := h.Values(headerB3); len(v) > 0 {
			if b, ok := ParseB3(v[0]); ok {
				c.SetSampling(b.Sampling)
				if b.HasIDs() {
					c.TraceID, c.ParentID = b.TraceID, b.SpanID
					c.Source = FormatB3
				} else {
					decided = true // b3 takes precedence over X-B3-*
				}
			}
		}
	}
	if c.Source == 0 && !decided {
		if b, ok := ParseB3Multi(h); ok {
			c.SetSampling(b.Sampling)
			if b.HasIDs() {
				c.TraceID, c.ParentID = b.TraceID, b.SpanID
				c.Source = FormatB3Multi
			} else {
				decided = true
			}
		}
	}
	if c.Source == 0 {
		c.TraceID = trace.NewTraceID(nil)
		c.Flags = FlagRandom
		if !decided {
			c.SetSampling(trace.SamplingAccept)
		}
	} else {
		c.Continued = true
	}
	if c.Sampled {
		c.Flags |= FlagSampled
	}
	for {
		c.SpanID = trace.NewSpanID(nil)
		if c.SpanID != c.ParentID {
			break
		}
	}
	c.Baggage = normalizeBaggage(h.Values(headerBaggage))
	if c.RequestID = RequestID(h); c.RequestID == "" {
		if sp != nil {
			var b [36]byte
			c.RequestID = sp.Text(appendRequestID(b[:0], nil))
		} else {
			c.RequestID = NewRequestID(nil)
		}
	}
	return c
}

// Inject writes c onto the outgoing request headers h for the given
// formats, replacing any stale incoming copies of those formats:
//
//   - FormatW3C: traceparent (version 00, c.SpanID as parent-id, reserved
//     flags cleared) and tracestate when c.TraceState is not empty;
//   - FormatSentry: sentry-trace, and the Sentry dynamic sampling context
//     (sentry-trace_id, sentry-sampled) appended to baggage, only if the
//     baggage holds no sentry-* member yet (see AppendSentryBaggage);
//   - FormatB3: b3 as one header; FormatB3Multi: X-B3-* headers. Either
//     removes every incoming B3 header first.
//
// Baggage is always written from c.Baggage (removed when empty), and
// X-Request-ID from c.RequestID when it is not empty. Every format carries
// the same trace id, span id and decision. If c has no valid trace id or
// span id, the id formats are only removed.
//
// Inject makes at most two allocations whatever the formats: all values it
// builds share one string, and all header value slices share one backing
// array (each capped at length 1, so appending to one header's values
// cannot overwrite another's).
func Inject(h http.Header, c Context, formats Formats) {
	for k, name := range keyNames {
		// X-Request-ID is only overwritten, below, when c has one.
		if k != keyRequestID && Replaces(formats, name) {
			delete(h, name)
		}
	}
	var stack [512]byte
	var out [maxInjected]injected
	buf, n := render(stack[:0], c, formats, &out)
	shared := string(buf)
	vals := make([]string, n)
	for i, f := range out[:n] {
		vals[i] = f.lit
		if f.lit == "" {
			vals[i] = shared[f.from:f.to]
		}
		h[f.key] = vals[i : i+1 : i+1]
	}
}

// AppendHeaderLines appends what Inject would set, as HTTP/1 header lines
// ("name: value\r\n", named as wireName says), to b. It is Inject for a
// proxy that writes request heads itself: with Replaces to drop the
// incoming lines it stands for, it needs no header map and, when b has
// room, no allocation.
func AppendHeaderLines(b []byte, c Context, formats Formats) []byte {
	var stack [512]byte
	var out [maxInjected]injected
	buf, n := render(stack[:0], c, formats, &out)
	for _, f := range out[:n] {
		b = append(b, wireName(f.key)...)
		b = append(b, ": "...)
		if f.lit != "" {
			b = append(b, f.lit...)
		} else {
			b = append(b, buf[f.from:f.to]...)
		}
		b = append(b, "\r\n"...)
	}
	return b
}

// wireName is the name a header keyed by its canonical name is written
// with: lowercase for the formats whose specs ask for it (W3C Trace
// Context and Baggage: "SHOULD send the header name in lowercase"; b3 and
// sentry-trace are spelled so by their own specs), and X-B3-* as B3
// spells them. Inject cannot do the same: net/http keys a header map by
// canonical name, and Go's HTTP/2 transport lowercases every name anyway.
func wireName(key string) string {
	switch key {
	case headerTraceParent:
		return "traceparent"
	case headerTraceState:
		return "tracestate"
	case headerBaggage:
		return "baggage"
	case headerSentryTrace:
		return "sentry-trace"
	case headerB3:
		return "b3"
	case headerB3TraceID:
		return "X-B3-TraceId"
	case headerB3SpanID:
		return "X-B3-SpanId"
	case headerB3ParentSpanID:
		return "X-B3-ParentSpanId"
	}
	return key
}

// Replaces reports whether Inject, for formats, removes or overwrites the
// header name (any case): the incoming copies of a format it writes, every
// B3 header when it writes either B3 form, baggage and X-Request-ID always.
func Replaces(formats Formats, name string) bool {
	switch keyOf(name) {
	case keyTraceParent, keyTraceState:
		return formats&FormatW3C != 0
	case keySentryTrace:
		return formats&FormatSentry != 0
	case keyB3, keyB3TraceID, keyB3SpanID, keyB3ParentSpanID, keyB3Sampled, keyB3Flags:
		return formats&(FormatB3|FormatB3Multi) != 0
	case keyBaggage, keyRequestID: // a context from Extract always has a request id
		return true
	}
	return false
}

// injected is one header Inject writes: its canonical name, and its value
// either as lit or as buf[from:to] of render's buffer.
type injected struct {
	key      string
	from, to int
	lit      string
}

// maxInjected bounds the headers one Inject writes: traceparent,
// tracestate, sentry-trace, b3, four X-B3-*, baggage and X-Request-ID.
const maxInjected = 10

// render works out the headers Inject writes for c and formats, in the
// order they go on the wire. Values made from ids are appended to buf;
// values passed through (tracestate, baggage, X-Request-ID) are not copied.
func render(buf []byte, c Context, formats Formats, out *[maxInjected]injected) ([]byte, int) {
	if !c.TraceID.IsValid() || !c.SpanID.IsValid() {
		formats = 0
	}
	sampling := c.Sampling()
	n := 0
	add := func(key string, from int) {
		if from < len(buf) { // empty only for baggage with nothing that fit
			out[n] = injected{key: key, from: from, to: len(buf)}
			n++
		}
	}
	lit := func(key, v string) {
		out[n] = injected{key: key, lit: v}
		n++
	}
	if formats&FormatW3C != 0 {
		tp := TraceParent{TraceID: c.TraceID, ParentID: c.SpanID, Flags: c.Flags & knownFlags &^ FlagSampled}
		if sampling.Sampled() {
			tp.Flags |= FlagSampled
		}
		from := len(buf)
		buf = tp.AppendFormat(buf)
		add(headerTraceParent, from)
		if c.TraceState != "" {
			lit(headerTraceState, c.TraceState)
		}
	}
	if formats&FormatSentry != 0 {
		from := len(buf)
		buf = SentryTrace{TraceID: c.TraceID, SpanID: c.SpanID, Sampling: sampling}.AppendFormat(buf)
		add(headerSentryTrace, from)
	}
	if formats&FormatB3 != 0 {
		from := len(buf)
		buf = B3{TraceID: c.TraceID, SpanID: c.SpanID, ParentSpanID: c.ParentID, Sampling: sampling}.AppendFormat(buf)
		add(headerB3, from)
	}
	if formats&FormatB3Multi != 0 {
		from := len(buf)
		buf = appendHex(buf, c.TraceID[:])
		add(headerB3TraceID, from)
		from = len(buf)
		buf = appendHex(buf, c.SpanID[:])
		add(headerB3SpanID, from)
		if c.ParentID.IsValid() {
			from = len(buf)
			buf = appendHex(buf, c.ParentID[:])
			add(headerB3ParentSpanID, from)
		}
		switch sampling {
		case trace.SamplingDeny:
			lit(headerB3Sampled, "0")
		case trace.SamplingAccept:
			lit(headerB3Sampled, "1")
		case trace.SamplingDebug:
			lit(headerB3Flags, "1")
		}
	}
	if formats&FormatSentry != 0 && !hasSentryBaggage(c.Baggage) {
		from := len(buf)
		buf = appendSentryBaggage(buf, c.Baggage, &SentryDSC{TraceID: c.TraceID, Sampled: sampling})
		add(headerBaggage, from)
	} else if c.Baggage != "" {
		lit(headerBaggage, c.Baggage)
	}
	if c.RequestID != "" {
		lit(headerRequestID, c.RequestID)
	}
	return buf, n
}

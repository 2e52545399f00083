package trace

import (
	"net/http"
	"strings"
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
	TraceID TraceID
	// SpanID is this hop's new span id; Inject writes it as the parent id
	// (traceparent parent-id, sentry-trace span id, B3 SpanId).
	SpanID SpanID
	// ParentID is the incoming parent span id, zero for a new trace. Inject
	// writes it only as B3 ParentSpanId.
	ParentID SpanID
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
func (c Context) Sampling() Sampling {
	switch {
	case c.Debug:
		return SamplingDebug
	case c.Sampled:
		return SamplingAccept
	case c.Deferred:
		return SamplingDeferred
	}
	return SamplingDeny
}

func (c *Context) setSampling(s Sampling) {
	c.Sampled = s.Sampled()
	c.Debug = s == SamplingDebug
	c.Deferred = s == SamplingDeferred
}

// Extract reads the trace context of an incoming request. h must use
// canonical keys, as net/http provides them. The first format that holds a
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
func Extract(h http.Header) Context {
	var c Context
	decided := false // a decision arrived without ids
	if v := h[headerTraceParent]; len(v) == 1 {
		if tp, ok := ParseTraceParent(v[0]); ok {
			c.TraceID, c.ParentID = tp.TraceID, tp.ParentID
			c.Flags = tp.Flags & knownFlags
			c.Sampled = tp.Sampled()
			c.Source = FormatW3C
			// The spec forbids reading tracestate without a valid traceparent.
			c.TraceState = normalizeTraceState(h[headerTraceState])
		}
	}
	if c.Source == 0 {
		if v := h[headerSentryTrace]; len(v) > 0 {
			if st, ok := ParseSentryTrace(v[0]); ok {
				c.TraceID, c.ParentID = st.TraceID, st.SpanID
				c.setSampling(st.Sampling)
				c.Source = FormatSentry
			}
		}
	}
	if c.Source == 0 {
		if v := h[headerB3]; len(v) > 0 {
			if b, ok := ParseB3(v[0]); ok {
				c.setSampling(b.Sampling)
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
			c.setSampling(b.Sampling)
			if b.HasIDs() {
				c.TraceID, c.ParentID = b.TraceID, b.SpanID
				c.Source = FormatB3Multi
			} else {
				decided = true
			}
		}
	}
	if c.Source == 0 {
		c.TraceID = NewTraceID(nil)
		c.Flags = FlagRandom
		if !decided {
			c.setSampling(SamplingAccept)
		}
	} else {
		c.Continued = true
	}
	if c.Sampled {
		c.Flags |= FlagSampled
	}
	for {
		c.SpanID = NewSpanID(nil)
		if c.SpanID != c.ParentID {
			break
		}
	}
	c.Baggage = normalizeBaggage(h[headerBaggage])
	if c.RequestID = RequestID(h); c.RequestID == "" {
		c.RequestID = NewRequestID(nil)
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
// builds share one string buffer, and all header value slices share one
// backing array (each capped at length 1, so appending to one header's
// values cannot overwrite another's).
func Inject(h http.Header, c Context, formats Formats) {
	ids := c.TraceID.IsValid() && c.SpanID.IsValid()
	sampling := c.Sampling()

	if formats&FormatW3C != 0 {
		delete(h, headerTraceParent)
		delete(h, headerTraceState)
	}
	if formats&FormatSentry != 0 {
		delete(h, headerSentryTrace)
	}
	if formats&(FormatB3|FormatB3Multi) != 0 {
		deleteB3(h)
	}
	delete(h, headerBaggage)
	if !ids {
		formats = 0
	}
	sentryBaggage := formats&FormatSentry != 0 && !hasSentryBaggage(c.Baggage)

	// Size the shared buffer and header slice array.
	size, nvals := 0, 1 // X-Request-ID
	if formats&FormatW3C != 0 {
		size += traceParentLen
		nvals += 2
	}
	if formats&FormatSentry != 0 {
		size += sentryTraceSampledLen
		nvals++
	}
	if formats&FormatB3 != 0 {
		size += 32 + 1 + 16 + 2 + 17
		nvals++
	}
	if formats&FormatB3Multi != 0 {
		size += 32 + 16 + 16
		nvals += 4
	}
	nvals++ // baggage
	if sentryBaggage {
		size += len(c.Baggage) + sentryBaggageMaxLen
	}

	var b strings.Builder
	b.Grow(size)
	// Each value is a span of the one buffer; at most 7 are written.
	var spans [8]valueSpan
	n := 0
	mark := func(key string, from int) {
		spans[n] = valueSpan{key, from, b.Len()}
		n++
	}
	var tmp [68]byte
	if formats&FormatW3C != 0 {
		from := b.Len()
		tp := TraceParent{TraceID: c.TraceID, ParentID: c.SpanID, Flags: c.Flags & knownFlags &^ FlagSampled}
		if sampling.Sampled() {
			tp.Flags |= FlagSampled
		}
		b.Write(tp.AppendFormat(tmp[:0]))
		mark(headerTraceParent, from)
	}
	if formats&FormatSentry != 0 {
		from := b.Len()
		b.Write(SentryTrace{TraceID: c.TraceID, SpanID: c.SpanID, Sampling: sampling}.AppendFormat(tmp[:0]))
		mark(headerSentryTrace, from)
	}
	if formats&FormatB3 != 0 {
		from := b.Len()
		b.Write(B3{TraceID: c.TraceID, SpanID: c.SpanID, ParentSpanID: c.ParentID, Sampling: sampling}.AppendFormat(tmp[:0]))
		mark(headerB3, from)
	}
	if formats&FormatB3Multi != 0 {
		from := b.Len()
		b.Write(appendHex(tmp[:0], c.TraceID[:]))
		mark(headerB3TraceID, from)
		from = b.Len()
		b.Write(appendHex(tmp[:0], c.SpanID[:]))
		mark(headerB3SpanID, from)
		if c.ParentID.IsValid() {
			from = b.Len()
			b.Write(appendHex(tmp[:0], c.ParentID[:]))
			mark(headerB3ParentSpanID, from)
		}
	}
	if sentryBaggage {
		from := b.Len()
		writeSentryBaggage(&b, c.Baggage, &SentryDSC{TraceID: c.TraceID, Sampled: sampling})
		mark(headerBaggage, from)
	}
	buf := b.String()

	vals := make([]string, 0, nvals)
	set := func(key, v string) {
		vals = append(vals, v)
		i := len(vals) - 1
		h[key] = vals[i : i+1 : i+1]
	}
	for _, s := range spans[:n] {
		if s.from < s.to { // empty only for baggage with nothing that fit
			set(s.key, buf[s.from:s.to])
		}
	}
	if formats&FormatW3C != 0 && c.TraceState != "" {
		set(headerTraceState, c.TraceState)
	}
	if formats&FormatB3Multi != 0 {
		switch sampling {
		case SamplingDeny:
			set(headerB3Sampled, "0")
		case SamplingAccept:
			set(headerB3Sampled, "1")
		case SamplingDebug:
			set(headerB3Flags, "1")
		}
	}
	if !sentryBaggage && c.Baggage != "" {
		set(headerBaggage, c.Baggage)
	}
	if c.RequestID != "" {
		set(headerRequestID, c.RequestID)
	}
}

// valueSpan locates one header value in Inject's shared buffer.
type valueSpan struct {
	key      string
	from, to int
}

// Package propagate is the trace header codec the proxy uses to stamp
// every hop: it reads the trace context of an incoming request (Extract,
// or ExtractFor with a Carrier filled from a hand-parsed head) and writes it
// onto the outgoing one (Inject, AppendHeaderLines), in the formats a
// route is configured with (Formats). The ids, the span and the sampling
// decision it carries are package trace's; it records nothing.
//
// # Formats
//
// The codec reads and writes four trace header families:
//
//   - W3C Trace Context (Level 2): traceparent
//     "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>" and
//     tracestate, a list of at most 32 vendor key=value members. Flags bit 0
//     is sampled, bit 1 (Level 2) says the trace id is random; other bits
//     are reserved and cleared on output. Higher versions are read by the
//     00 rules and written back as 00. See ParseTraceParent and
//     ParseTraceState.
//   - W3C Baggage: user key=value members with ;properties, all of them
//     within 8192 bytes; values stay percent-encoded as received.
//     See ParseBaggage.
//   - Sentry: sentry-trace "<32 hex trace id>-<16 hex span id>[-0|-1]",
//     plus the dynamic sampling context as sentry-* baggage members, which
//     the head of the trace freezes: once any sentry-* member exists,
//     nothing adds or changes one. See ParseSentryTrace and
//     AppendSentryBaggage.
//   - Zipkin B3: the single header
//     "b3: <16|32 hex trace id>-<16 hex span id>[-<0|1|d>[-<16 hex parent>]]"
//     (or a decision alone, "b3: 0"), and the X-B3-* multi headers. 64-bit
//     trace ids are left-padded to 128 bits. See ParseB3 and ParseB3Multi.
//
// X-Request-ID is passed through unchanged, or generated when absent.
//
// # Precedence
//
// Extract takes the first valid context in this order: traceparent (one
// field only: several fields mean invalid), sentry-trace, b3, X-B3-*. A
// malformed header is skipped, never repaired. Without any, it starts a
// new, sampled trace with a random trace id and FlagRandom. Every hop gets a
// fresh span id, and Inject writes the same trace id, span id and decision
// in every enabled format, removing stale incoming copies first.
//
//	incoming request                          outgoing request
//	traceparent ─┐                        ┌─> traceparent  00-T-S-f
//	sentry-trace ├─ Extract ─> Context ─> ├─> tracestate
//	b3 / X-B3-*  │   (T, parent P,        ├─> sentry-trace T-S-s
//	tracestate   │    new span S,         ├─> b3           T-S-s-P
//	baggage      │    decision s)         ├─> baggage      (+ sentry-* if none)
//	X-Request-ID ┘                        └─> X-Request-ID
//
// # Hot path
//
// Parsing uses no regexp and no reflection. Extract indexes http.Header by
// canonical key and returns already-canonical tracestate and baggage values
// as they are, so a typical request costs no allocation; Inject builds every
// value in one buffer. Ids come from the runtime's per-thread ChaCha8
// generator (see NewTraceID).
package propagate

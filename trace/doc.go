// Package trace is devstack's span model: the ids of a distributed trace
// (TraceID, SpanID), one recorded proxy hop (Span) with its sampling
// decision (Sampling), and the two sides of a span store: Recorder, which
// the proxy writes to on its hot path, and Reader (Query, Summary), which
// the control API, the CLI and exporters read from.
//
// It imports no other devstack package, so everything that handles spans
// can use it without the proxy:
//
//	proxy/propagate   the header codec: trace context in and out of requests
//	trace/store       the span store: an in-memory index over a span log
//	trace/render      waterfall and OTLP/JSON export of a trace's spans
//
// # Pooled spans
//
// The proxy records every hop without allocating a span: NewSpan takes one
// from a pool, and the Recorder it is handed to calls Span.Recycle once it
// keeps nothing of it. Text makes strings in the span's own buffer, so a
// request's head costs no allocation either; such strings die with the
// span.
package trace

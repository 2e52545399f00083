// Package render turns the spans of one trace into something to read or
// to send on: Waterfall draws the terminal waterfall of `devstack trace
// <id>`, Views gives the same reading as JSON, and WriteOTLPJSON writes
// OTLP/JSON for Jaeger, Tempo or any OpenTelemetry collector. It reads
// spans; it never records any.
//
// The reading (analysis.go) is what the spans say beyond themselves:
//
//   - self time: a hop's duration less the union of its calls' time;
//   - the critical path (CriticalPath): from the root's end, back through
//     the call that was last blocking it, then on from that call's start,
//     and into each call taken; so every call of a sequence is on it, and
//     of calls made in parallel the one waited for;
//   - where the time went: the hop on the critical path with the most
//     self time, and its share of the trace;
//   - where an error started: the deepest failed hop whose own calls all
//     succeeded, and the nearest caller that answered anyway (swallowed
//     it), if one did.
//
// Links the proxy inferred are drawn apart from links the caller sent:
// '~' when certain (the calling service was serving one request), '?'
// with "(1 of N?)" when guessed among N (Span.Ambiguous).
package render

// Package tracectx reads and writes W3C Trace Context headers
// (https://www.w3.org/TR/trace-context/) with the standard library only.
//
//	incoming traceparent ──► Extract ──► Span{TraceID, ParentID, SpanID(new), Flags, State}
//	                                        │
//	                          Inject(header) ▼
//	outgoing traceparent: 00-<TraceID>-<SpanID>-<Flags>, tracestate passed through
//
// A missing or malformed traceparent starts a new trace; the tracestate of a
// malformed traceparent is dropped, as the spec requires.
package tracectx

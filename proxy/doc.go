// Package proxy is devstack's tracing reverse proxy. It owns every
// service's declared port and forwards to where the service really listens,
// so that every request between services, not only the ones from outside,
// is one hop that it stamps with trace headers and records as a span.
//
//	caller ──► :18082 (proxy owns the declared port) ──► 127.0.0.1:private (orders)
//	                │
//	                ├─ detect: HTTP/1.1, h2c/gRPC, WebSocket, else TCP; a silent
//	                │  client is decided by who speaks first (detect.go)
//	                ├─ check: framing rules, answered the same on every path
//	                ├─ decide: propagate.Extract → parent link (known hop /
//	                │  in-flight / inferred), then the fault (fault.go)
//	                ├─ stamp: propagate.Inject / AppendHeaderLines (same ids in every format)
//	                ├─ relay: the byte path (net/http, HTTP/1 goroutine, event loop, TCP)
//	                └─ record: trace.Recorder.Record(span) when the hop ends (never blocks)
//
// Every path runs the same steps (pipeline.go); a path only says how bytes
// move.
//
// An inferred link (a service that dropped the context calls out while
// serving requests) records its evidence in Span.Candidates: how many of
// the service's in-flight requests the call could belong to, narrowed by
// what the call still carries of its request (its X-Request-ID, or the
// sentry-trace_id in its baggage); 1 means certain, more a guess.
//
// The routing table maps a listen address to a service and an upstream
// address. An upstream can change while requests wait: a dial refused
// because the service is restarting is retried until it listens again or
// the request's deadline passes, so a restart (or, later, a hot-reload
// swap) holds requests instead of failing them.
//
// The proxy never imports the runner or the supervisor: the supervisor
// plans the routes (SetRoutes) and tells it which services are down
// (SetDown), and callers are identified through the small CallerResolver
// interface. Trace headers are proxy/propagate's, spans package trace's;
// the proxy writes spans to a trace.Recorder (trace/store in devstack).
package proxy

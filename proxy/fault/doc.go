// Package fault is devstack's fault model: the rules a user (or a plugin)
// declares, compiled into an immutable Set that the proxy consults on every
// request, and the Decision the proxy's pipeline carries out.
//
//	fault add / scenario file / Toxiproxy API / X-Devstack-Fault
//	        │  (in the fault plugin)
//	        ▼
//	[]Rule ──Compile──► *Set ──Table.Store──► proxy: Table.Load().Decide(req) → Decision
//	                                                  (no lock, no allocation when
//	                                                   no rule names the service)
//
// A Rule names its target service and may narrow what it matches: the
// calling service, a route glob, a method, a header (exact value, regular
// expression, or present), and the first N matching requests. Its
// probability is drawn per request, never per connection, so a kept-alive
// connection does not lose (or keep) a fault for its whole life. A rule may
// expire.
//
// The vocabulary is HTTP/gRPC latency with jitter (fixed, uniform or normal
// distribution), abort with an HTTP status and body, abort with a gRPC
// status, connection reset, hang (until the client gives up or for a set
// time), a response bandwidth limit and a slow body; and for TCP ports,
// latency, bandwidth, reset, timeout and port down.
//
// The package decides; it never sleeps, writes or closes anything. The
// proxy does, in one pipeline step shared by every byte path, and records
// the Decision's labels on the hop's span.
package fault

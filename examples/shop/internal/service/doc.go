// Package service implements the five shop services as http.Handlers.
//
//	client ──► gateway ──► orders ──┬──► inventory
//	           :18080      :18082   │    :18083
//	                                └──► payments ──► fraud
//	                                     :18084       :18085
//
// Every service reads W3C trace context from its request, starts its own
// span, and passes the trace on to its upstream calls, except orders, which
// deliberately sends no traceparent or tracestate so that devstack can show
// what broken propagation looks like: inventory and payments each start a
// new trace.
//
// Fault knobs (package knob) ride in the query string and are forwarded on
// every hop; each service acts only on the knobs that name it. A failing
// upstream turns into 502 (504 on a timeout) at every hop above it, with a
// JSON Failure body naming the hop where the failure started; upstream 4xx
// answers pass through unchanged.
package service

// Package render turns the spans of one trace into something to read or
// to send on: Waterfall draws the terminal waterfall of `devstack traces
// <id>` (with CriticalPath), and WriteOTLPJSON writes OTLP/JSON for
// Jaeger, Tempo or any OpenTelemetry collector. It reads spans; it never
// records any.
package render

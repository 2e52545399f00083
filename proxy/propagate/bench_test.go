package propagate_test

import (
	"net/http"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
)

// BenchmarkExtractInject is one proxy hop: read the incoming headers, write
// the outgoing ones with the default formats.
func BenchmarkExtractInject(b *testing.B) {
	for _, bc := range []struct {
		name    string
		in      http.Header
		formats propagate.Formats
	}{
		{"typical", typicalHeader(), propagate.DefaultFormats},
		{"typical_all_formats", typicalHeader(), propagate.DefaultFormats | propagate.FormatB3Multi},
		{"no_context", header("User-Agent", "curl/8.5.0", "Accept", "*/*"), propagate.DefaultFormats},
		{"b3_multi_in", header("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId", "a2fb4a1d1a96d312",
			"X-B3-Sampled", "1", "X-Request-ID", "r1"), propagate.DefaultFormats},
		{"messy_tracestate_baggage", header(
			"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"tracestate", "rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE", "tracestate", "rojo=dup",
			"baggage", "userId = alice", "baggage", "isProduction=false",
			"X-Request-ID", "r1"), propagate.DefaultFormats},
	} {
		b.Run(bc.name, func(b *testing.B) {
			out := bc.in.Clone()
			b.ReportAllocs()
			for b.Loop() {
				c := propagate.Extract(bc.in)
				propagate.Inject(out, c, bc.formats)
			}
		})
	}
}

func BenchmarkExtract(b *testing.B) {
	in := typicalHeader()
	b.ReportAllocs()
	for b.Loop() {
		_ = propagate.Extract(in)
	}
}

func BenchmarkInject(b *testing.B) {
	in := typicalHeader()
	out := in.Clone()
	c := propagate.Extract(in)
	b.ReportAllocs()
	for b.Loop() {
		propagate.Inject(out, c, propagate.DefaultFormats)
	}
}

func BenchmarkParseTraceParent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		propagate.ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	}
}

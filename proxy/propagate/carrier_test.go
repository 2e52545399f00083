package propagate_test

import (
	"bufio"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// headerLines splits "Name: value" lines as a request head carries them.
func headerLines(raw string) [][2]string {
	var out [][2]string
	for line := range strings.SplitSeq(raw, "\n") {
		name, value, ok := strings.Cut(line, ":")
		value = strings.Trim(value, " \t\r")
		if !ok || name == "" || strings.IndexFunc(name, notToken) >= 0 || strings.IndexFunc(value, isCTL) >= 0 {
			continue // what a head parser would have rejected
		}
		out = append(out, [2]string{name, value})
	}
	return out
}

func notToken(r rune) bool {
	return r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
}

func isCTL(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }

// sameContext compares what two Extracts read, leaving out what Extract
// draws at random (the hop's span id, and a new trace's ids).
func sameContext(a, b propagate.Context) bool {
	a.SpanID, b.SpanID = trace.SpanID{}, trace.SpanID{}
	if !a.Continued && !b.Continued {
		a.TraceID, b.TraceID = trace.TraceID{}, trace.TraceID{}
	}
	if a.RequestID != b.RequestID && len(a.RequestID) == 36 && len(b.RequestID) == 36 {
		a.RequestID = b.RequestID // both generated
	}
	return a == b
}

// parseLines reads header lines as net/http would receive them.
func parseLines(t *testing.T, lines []byte) http.Header {
	t.Helper()
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(string(lines) + "\r\n"))).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("AppendHeaderLines wrote unreadable lines %q: %v", lines, err)
	}
	return http.Header(h)
}

// checkCarrierMatchesHeader is the fast path's contract: a Carrier filled
// from a head's lines extracts what http.Header does, and the lines
// AppendHeaderLines writes, after the lines Replaces drops, make the same
// upstream request as Inject.
func checkCarrierMatchesHeader(t *testing.T, raw string, formats propagate.Formats) {
	var car propagate.Carrier
	in := http.Header{}
	var kept [][2]string
	for _, f := range headerLines(raw) {
		isTrace := car.Add(f[0], f[1])
		in.Add(f[0], f[1])
		if !propagate.Replaces(formats, f[0]) {
			kept = append(kept, f)
		}
		if propagate.Replaces(formats, f[0]) && !isTrace {
			t.Fatalf("Replaces(%v, %q) for a header the carrier does not hold", formats, f[0])
		}
	}
	want := propagate.Extract(in)
	got := propagate.Extract(&car)
	if !sameContext(got, want) {
		t.Fatalf("headers %q:\ncarrier extracts %+v\nheader extracts  %+v", raw, got, want)
	}

	// Upstream: Inject on the incoming map, against the kept lines plus
	// AppendHeaderLines.
	out := in.Clone()
	propagate.Inject(out, want, formats)
	var lines []byte
	for _, f := range kept {
		lines = append(lines, f[0]+": "+f[1]+"\r\n"...)
	}
	lines = propagate.AppendHeaderLines(lines, want, formats)
	fast := parseLines(t, lines)
	if !maps.EqualFunc(out, fast, slices.Equal) {
		t.Fatalf("headers %q, formats %v:\nInject:            %v\nAppendHeaderLines: %v", raw, formats, out, fast)
	}
}

func TestCarrierMatchesHeader(t *testing.T) {
	for _, raw := range []string{
		"",
		"Host: x\nAccept: */*",
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\ntracestate: rojo=1,congo=2\nbaggage: k=v",
		"TRACEPARENT: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate: a=1\ntracestate: b=2\nbaggage: x=1\nBaggage: y=2\nx-request-id: abc\nX-Request-Id: def",
		"sentry-trace: 771a43a4192642f0b136d5159a501700-b7ad6b7169203331-1\nbaggage: sentry-trace_id=771a43a4192642f0b136d5159a501700",
		"b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
		"x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7\nX-B3-SpanId: e457b5a2e4d86bd1\nx-b3-parentspanid: 05e3ac9a4f6e3b90\nx-b3-sampled: 1",
		"b3: 0\nx-b3-flags: 1",
	} {
		for _, f := range []propagate.Formats{propagate.DefaultFormats, propagate.FormatW3C, propagate.FormatB3Multi, propagate.FormatSentry | propagate.FormatB3Multi, 0} {
			checkCarrierMatchesHeader(t, raw, f)
		}
	}
}

func TestCarrierRepeatedHeaderDoesNotAlias(t *testing.T) {
	var c propagate.Carrier
	c.Add("Tracestate", "a=1")
	c.Add("Baggage", "k=v")
	c.Add("tracestate", "b=2")
	if got := c.Values("Tracestate"); !slices.Equal(got, []string{"a=1", "b=2"}) {
		t.Fatalf("Tracestate = %q", got)
	}
	if got := c.Values("Baggage"); !slices.Equal(got, []string{"k=v"}) {
		t.Fatalf("Baggage = %q after a second tracestate", got)
	}
	c.Reset()
	if got := c.Values("Tracestate"); got != nil {
		t.Fatalf("after Reset: %q", got)
	}
	if c.Add("Host", "x") || c.Values("Host") != nil {
		t.Fatal("the carrier took a header that is not a trace header")
	}
}

// TestAppendHeaderLinesNamesAsTheSpecsDo: W3C Trace Context and Baggage
// ask for lowercase names, and B3 and Sentry spell theirs so.
func TestAppendHeaderLinesNamesAsTheSpecsDo(t *testing.T) {
	var c propagate.Carrier
	c.Add("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	c.Add("Tracestate", "rojo=1")
	c.Add("X-Request-Id", "abc")
	lines := string(propagate.AppendHeaderLines(nil, propagate.Extract(&c), propagate.DefaultFormats|propagate.FormatB3Multi))
	var names []string
	for l := range strings.Lines(lines) {
		name, _, _ := strings.Cut(l, ":")
		names = append(names, name)
	}
	want := []string{"traceparent", "tracestate", "sentry-trace", "b3", "X-B3-TraceId", "X-B3-SpanId", "X-B3-ParentSpanId", "X-B3-Sampled", "baggage", "X-Request-Id"}
	if !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
}

func TestAppendHeaderLinesDoesNotAllocate(t *testing.T) {
	var c propagate.Carrier
	c.Add("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	c.Add("x-request-id", "abc")
	tc := propagate.Extract(&c)
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = propagate.AppendHeaderLines(buf[:0], tc, propagate.DefaultFormats) }); n != 0 {
		t.Fatalf("AppendHeaderLines: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { propagate.Extract(&c) }); n != 0 {
		t.Fatalf("Extract from a Carrier: %v allocations", n)
	}
}

func FuzzCarrierMatchesHeader(f *testing.F) {
	f.Add("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\ntracestate: rojo=1", uint8(propagate.DefaultFormats))
	f.Add("b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d\nbaggage: a=1,b=2", uint8(propagate.FormatB3Multi))
	f.Add("X-B3-TraceId: 64fe8b2a57d3eff7\nx-b3-spanid: e457b5a2e4d86bd1\nSentry-Trace: 771a43a4192642f0b136d5159a501700-b7ad6b7169203331", uint8(15))
	f.Fuzz(func(t *testing.T, raw string, formats uint8) {
		checkCarrierMatchesHeader(t, raw, propagate.Formats(formats)&(propagate.FormatW3C|propagate.FormatSentry|propagate.FormatB3|propagate.FormatB3Multi))
	})
}

package propagate_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

const (
	tpTrace  = "12345678901234567890123456789012" // ids used by the W3C test harness
	tpParent = "1234567890123456"
	stTrace  = "771a43a4192642f0b136d5159a501700"
	stSpan   = "b7ad6b7169203331"
)

// header builds an http.Header through Add, so keys are canonical as
// net/http would give them.
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestExtractPrecedence(t *testing.T) {
	validTP := "00-" + tpTrace + "-" + tpParent + "-01"
	validST := stTrace + "-" + stSpan + "-0"
	validB3 := b3Trace + "-" + b3Span + "-1-" + b3Parent
	multi := []string{"X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId", "a2fb4a1d1a96d312", "X-B3-Sampled", "1"}

	tests := []struct {
		name      string
		h         http.Header
		source    propagate.Formats
		traceID   string // "" means a new random trace
		parentID  string
		sampling  trace.Sampling
		flags     byte
		state     string
		continued bool
	}{
		{"traceparent wins over all", header(append([]string{"traceparent", validTP, "sentry-trace", validST, "b3", validB3}, multi...)...),
			propagate.FormatW3C, tpTrace, tpParent, trace.SamplingAccept, 0x01, "", true},
		{"traceparent with tracestate", header("traceparent", validTP, "tracestate", "foo=1", "tracestate", "bar=2"),
			propagate.FormatW3C, tpTrace, tpParent, trace.SamplingAccept, 0x01, "foo=1,bar=2", true},
		{"reserved flags dropped, random kept", header("traceparent", "00-"+tpTrace+"-"+tpParent+"-ff"),
			propagate.FormatW3C, tpTrace, tpParent, trace.SamplingAccept, 0x03, "", true},
		{"not sampled", header("traceparent", "00-"+tpTrace+"-"+tpParent+"-00"),
			propagate.FormatW3C, tpTrace, tpParent, trace.SamplingDeny, 0x00, "", true},
		{"future version downgraded", header("traceparent", "cc-"+tpTrace+"-"+tpParent+"-01-future"),
			propagate.FormatW3C, tpTrace, tpParent, trace.SamplingAccept, 0x01, "", true},
		{"invalid traceparent falls back to sentry", header("traceparent", "00-"+strings.Repeat("0", 32)+"-"+tpParent+"-01", "sentry-trace", validST, "tracestate", "foo=1"),
			propagate.FormatSentry, stTrace, stSpan, trace.SamplingDeny, 0x00, "", true},
		{"duplicate traceparent starts a new trace", header("traceparent", validTP, "traceparent", "00-"+tpTrace[:31]+"1-"+tpParent+"-01", "tracestate", "foo=1"),
			0, "", "", trace.SamplingAccept, 0x03, "", false},
		{"duplicate traceparent falls back to sentry", header("traceparent", validTP, "traceparent", validTP, "sentry-trace", validST),
			propagate.FormatSentry, stTrace, stSpan, trace.SamplingDeny, 0x00, "", true},
		{"sentry deferred", header("sentry-trace", stTrace+"-"+stSpan),
			propagate.FormatSentry, stTrace, stSpan, trace.SamplingDeferred, 0x00, "", true},
		{"sentry wins over b3", header(append([]string{"sentry-trace", validST, "b3", validB3}, multi...)...),
			propagate.FormatSentry, stTrace, stSpan, trace.SamplingDeny, 0x00, "", true},
		{"tracestate ignored without traceparent", header("sentry-trace", validST, "tracestate", "foo=1"),
			propagate.FormatSentry, stTrace, stSpan, trace.SamplingDeny, 0x00, "", true},
		{"invalid sentry falls back to b3", header("sentry-trace", "nope", "b3", validB3),
			propagate.FormatB3, b3Trace, b3Span, trace.SamplingAccept, 0x01, "", true},
		{"b3 single wins over multi", header(append([]string{"b3", validB3}, multi...)...),
			propagate.FormatB3, b3Trace, b3Span, trace.SamplingAccept, 0x01, "", true},
		{"b3 debug", header("b3", b3Trace+"-"+b3Span+"-d"),
			propagate.FormatB3, b3Trace, b3Span, trace.SamplingDebug, 0x01, "", true},
		{"b3 64-bit padded", header("b3", "64fe8b2a57d3eff7-"+b3Span),
			propagate.FormatB3, "000000000000000064fe8b2a57d3eff7", b3Span, trace.SamplingDeferred, 0x00, "", true},
		{"invalid b3 falls back to multi", header(append([]string{"b3", "garbage"}, multi...)...),
			propagate.FormatB3Multi, "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", trace.SamplingAccept, 0x01, "", true},
		{"b3 decision only: new trace, not sampled, multi ignored", header(append([]string{"b3", "0"}, multi...)...),
			0, "", "", trace.SamplingDeny, 0x02, "", false},
		{"multi decision only", header("X-B3-Sampled", "0"),
			0, "", "", trace.SamplingDeny, 0x02, "", false},
		{"nothing: new sampled random trace", header(),
			0, "", "", trace.SamplingAccept, 0x03, "", false},
		{"tracestate alone is discarded", header("tracestate", "foo=1"),
			0, "", "", trace.SamplingAccept, 0x03, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := propagate.Extract(tt.h)
			if c.Source != tt.source || c.Continued != tt.continued {
				t.Errorf("Source, Continued = %v, %v; want %v, %v", c.Source, c.Continued, tt.source, tt.continued)
			}
			if !c.TraceID.IsValid() || !c.SpanID.IsValid() {
				t.Fatalf("invalid ids %v %v", c.TraceID, c.SpanID)
			}
			if tt.traceID != "" {
				if c.TraceID.String() != tt.traceID || c.ParentID.String() != tt.parentID {
					t.Errorf("TraceID, ParentID = %s, %s; want %s, %s", c.TraceID, c.ParentID, tt.traceID, tt.parentID)
				}
			} else {
				if strings.Contains(tt.h.Get("traceparent"), c.TraceID.String()) || c.ParentID.IsValid() {
					t.Errorf("expected a new trace, got %s parent %s", c.TraceID, c.ParentID)
				}
			}
			if c.SpanID == c.ParentID {
				t.Error("hop span id equals incoming parent id")
			}
			if c.Sampling() != tt.sampling || c.Flags != tt.flags {
				t.Errorf("Sampling, Flags = %v, %02x; want %v, %02x", c.Sampling(), c.Flags, tt.sampling, tt.flags)
			}
			if c.TraceState != tt.state {
				t.Errorf("TraceState = %q, want %q", c.TraceState, tt.state)
			}
		})
	}
}

func TestExtractFreshSpanPerCall(t *testing.T) {
	h := header("traceparent", "00-"+tpTrace+"-"+tpParent+"-01")
	seen := map[trace.SpanID]bool{}
	for range 3 {
		c := propagate.Extract(h)
		if seen[c.SpanID] {
			t.Fatal("span id reused")
		}
		seen[c.SpanID] = true
	}
}

func TestExtractBaggageAndRequestID(t *testing.T) {
	c := propagate.Extract(header("baggage", "userId = alice", "baggage", "bad key=1,isProduction=false", "X-Request-ID", "req-1"))
	if c.Baggage != "userId=alice,isProduction=false" {
		t.Errorf("Baggage = %q", c.Baggage)
	}
	if c.RequestID != "req-1" {
		t.Errorf("RequestID = %q", c.RequestID)
	}
	if c := propagate.Extract(header()); len(c.RequestID) != 36 {
		t.Errorf("generated RequestID = %q", c.RequestID)
	}
}

// parsedOut is every format read back from an outgoing header set.
type parsedOut struct {
	tp    propagate.TraceParent
	st    propagate.SentryTrace
	b3    propagate.B3
	multi propagate.B3
}

func parseOut(t *testing.T, h http.Header, formats propagate.Formats) parsedOut {
	t.Helper()
	var p parsedOut
	var ok bool
	if formats.Has(propagate.FormatW3C) {
		if len(h.Values("traceparent")) != 1 {
			t.Fatalf("traceparent values: %q", h.Values("traceparent"))
		}
		if p.tp, ok = propagate.ParseTraceParent(h.Get("traceparent")); !ok {
			t.Fatalf("bad traceparent %q", h.Get("traceparent"))
		}
		if !strings.HasPrefix(h.Get("traceparent"), "00-") {
			t.Errorf("traceparent not version 00: %q", h.Get("traceparent"))
		}
	}
	if formats.Has(propagate.FormatSentry) {
		if p.st, ok = propagate.ParseSentryTrace(h.Get("sentry-trace")); !ok {
			t.Fatalf("bad sentry-trace %q", h.Get("sentry-trace"))
		}
	}
	if formats.Has(propagate.FormatB3) {
		if p.b3, ok = propagate.ParseB3(h.Get("b3")); !ok {
			t.Fatalf("bad b3 %q", h.Get("b3"))
		}
	}
	if formats.Has(propagate.FormatB3Multi) {
		if p.multi, ok = propagate.ParseB3Multi(h); !ok {
			t.Fatalf("bad X-B3-* %v", h)
		}
	}
	return p
}

func TestInjectConsistency(t *testing.T) {
	all := propagate.FormatW3C | propagate.FormatSentry | propagate.FormatB3 | propagate.FormatB3Multi
	inputs := map[string]http.Header{
		"w3c sampled":     header("traceparent", "00-"+tpTrace+"-"+tpParent+"-03", "tracestate", "rojo=1, congo=2"),
		"w3c not sampled": header("traceparent", "cc-"+tpTrace+"-"+tpParent+"-fe-x"),
		"sentry deferred": header("sentry-trace", stTrace+"-"+stSpan),
		"b3 debug":        header("b3", b3Trace+"-"+b3Span+"-d-"+b3Parent),
		"b3 multi deny":   header("X-B3-TraceId", "64fe8b2a57d3eff7", "X-B3-SpanId", b3Span, "X-B3-Sampled", "0"),
		"new trace":       header(),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			c := propagate.Extract(in)
			out := in.Clone()
			propagate.Inject(out, c, all)
			p := parseOut(t, out, all)

			for fname, got := range map[string]trace.TraceID{"traceparent": p.tp.TraceID, "sentry-trace": p.st.TraceID, "b3": p.b3.TraceID, "X-B3": p.multi.TraceID} {
				if got != c.TraceID {
					t.Errorf("%s trace id %s, want %s", fname, got, c.TraceID)
				}
			}
			for fname, got := range map[string]trace.SpanID{"traceparent": p.tp.ParentID, "sentry-trace": p.st.SpanID, "b3": p.b3.SpanID, "X-B3": p.multi.SpanID} {
				if got != c.SpanID {
					t.Errorf("%s span id %s, want hop span %s", fname, got, c.SpanID)
				}
			}
			if p.multi.ParentSpanID != c.ParentID {
				t.Errorf("X-B3-ParentSpanId %s, want %s", p.multi.ParentSpanID, c.ParentID)
			}
			s := c.Sampling()
			if p.tp.Sampled() != s.Sampled() || p.st.Sampling.Sampled() != s.Sampled() ||
				p.b3.Sampling != s || p.multi.Sampling != s {
				t.Errorf("decisions differ: context %v, traceparent %v, sentry %v, b3 %v, multi %v",
					s, p.tp.Sampled(), p.st.Sampling, p.b3.Sampling, p.multi.Sampling)
			}
			if p.tp.Flags&^(propagate.FlagSampled|propagate.FlagRandom) != 0 {
				t.Errorf("reserved flags written: %02x", p.tp.Flags)
			}
			if c.Flags&propagate.FlagRandom != p.tp.Flags&propagate.FlagRandom {
				t.Errorf("random flag not preserved: context %02x, written %02x", c.Flags, p.tp.Flags)
			}
			if out.Get("X-Request-ID") != c.RequestID {
				t.Errorf("X-Request-ID %q, want %q", out.Get("X-Request-ID"), c.RequestID)
			}
			if got := out.Values("tracestate"); c.TraceState != "" && (len(got) != 1 || got[0] != c.TraceState) {
				t.Errorf("tracestate %q, want %q", got, c.TraceState)
			}
			bg := propagate.ParseBaggage(out.Values("baggage"))
			if m, ok := bg.Get("sentry-trace_id"); !ok || m.Value != c.TraceID.String() {
				t.Errorf("baggage sentry-trace_id = %+v, %v (baggage %q)", m, ok, out.Values("baggage"))
			}
		})
	}
}

func TestInjectW3CHarnessScenarios(t *testing.T) {
	// The W3C harness checks the traceparent a service sends on after
	// receiving the given headers.
	hop := func(kv ...string) (propagate.TraceParent, propagate.TraceState) {
		t.Helper()
		in := header(kv...)
		out := in.Clone()
		propagate.Inject(out, propagate.Extract(in), propagate.FormatW3C)
		p := parseOut(t, out, propagate.FormatW3C)
		return p.tp, propagate.ParseTraceState(out.Values("tracestate"))
	}
	tp, _ := hop("traceparent", "00-"+tpTrace+"-"+tpParent+"-01")
	if tp.TraceID.String() != tpTrace || tp.ParentID.String() == tpParent {
		t.Errorf("continued: %s", tp)
	}
	tp, _ = hop("traceparent", "00-12345678901234567890123456789011-"+tpParent+"-01", "traceparent", "00-"+tpTrace+"-"+tpParent+"-01")
	if s := tp.TraceID.String(); s == tpTrace || s == "12345678901234567890123456789011" {
		t.Errorf("duplicated traceparent continued: %s", tp)
	}
	tp, _ = hop("trace-parent", "00-"+tpTrace+"-"+tpParent+"-01")
	if tp.TraceID.String() == tpTrace {
		t.Error("wrong header name accepted")
	}
	for _, name := range []string{"TraceParent", "TRACEPARENT", "TrAcEpArEnT"} {
		if tp, _ = hop(name, "00-"+tpTrace+"-"+tpParent+"-01"); tp.TraceID.String() != tpTrace {
			t.Errorf("header name %s not accepted", name)
		}
	}
	_, ts := hop("traceparent", "00-"+tpTrace+"-"+tpParent+"-00", "tracestate", "foo=1", "tracestate", "")
	if v, ok := ts.Get("foo"); !ok || v != "1" {
		t.Errorf("tracestate not inherited: %q", ts)
	}
	_, ts = hop("traceparent", "00-"+tpTrace+"-"+tpParent+"-00", "trace-state", "foo=1")
	if ts.Len() != 0 {
		t.Errorf("trace-state header used: %q", ts)
	}
	_, ts = hop("traceparent", "00-"+tpTrace+"-"+tpParent+"-00", "tracestate", "foo=1,bar=2", "tracestate", "rojo=1,congo=2", "tracestate", "baz=3")
	if ts.Format() != "foo=1,bar=2,rojo=1,congo=2,baz=3" {
		t.Errorf("combined tracestate = %q", ts)
	}
}

func TestInjectRemovesStale(t *testing.T) {
	c := propagate.Extract(header("traceparent", "00-"+tpTrace+"-"+tpParent+"-01"))
	out := header(
		"traceparent", "00-"+tpTrace+"-"+tpParent+"-01", "traceparent", "junk",
		"tracestate", "stale=1",
		"sentry-trace", stTrace+"-"+stSpan,
		"b3", "0",
		"X-B3-TraceId", b3Trace, "X-B3-SpanId", b3Span, "X-B3-ParentSpanId", b3Parent, "X-B3-Sampled", "1", "X-B3-Flags", "1",
		"baggage", "k=v",
		"X-Request-ID", "old",
	)
	c.Baggage = ""
	propagate.Inject(out, c, propagate.DefaultFormats)
	for _, k := range []string{"tracestate", "baggage", "X-B3-TraceId", "X-B3-SpanId", "X-B3-ParentSpanId", "X-B3-Sampled", "X-B3-Flags"} {
		if k == "baggage" {
			continue // sentry members are added to the now empty baggage
		}
		if v := out.Values(k); len(v) != 0 {
			t.Errorf("%s not removed: %q", k, v)
		}
	}
	if got := out.Values("baggage"); len(got) != 1 || strings.Contains(got[0], "k=v") {
		t.Errorf("stale baggage kept: %q", got)
	}
	if len(out.Values("traceparent")) != 1 || len(out.Values("b3")) != 1 || len(out.Values("sentry-trace")) != 1 {
		t.Errorf("not exactly one value each: %v", out)
	}
	if out.Get("X-Request-ID") != c.RequestID {
		t.Errorf("request id %q, want %q", out.Get("X-Request-ID"), c.RequestID)
	}

	// Formats not written are left alone.
	out = header("b3", "0", "sentry-trace", stTrace+"-"+stSpan)
	propagate.Inject(out, c, propagate.FormatW3C)
	if out.Get("b3") != "0" || out.Get("sentry-trace") == "" {
		t.Errorf("unwritten formats touched: %v", out)
	}

	// An invalid context removes the id formats and writes none.
	out = header("traceparent", "00-"+tpTrace+"-"+tpParent+"-01", "b3", "0")
	propagate.Inject(out, propagate.Context{}, propagate.DefaultFormats)
	if out.Get("traceparent") != "" || out.Get("b3") != "" || out.Get("sentry-trace") != "" {
		t.Errorf("invalid context wrote headers: %v", out)
	}
}

func TestInjectSentryBaggageFrozen(t *testing.T) {
	in := header("sentry-trace", stTrace+"-"+stSpan+"-1", "baggage", "sentry-trace_id="+stTrace+",sentry-public_key=abc,userId=alice")
	c := propagate.Extract(in)
	out := in.Clone()
	propagate.Inject(out, c, propagate.DefaultFormats)
	if got := out.Get("baggage"); got != "sentry-trace_id="+stTrace+",sentry-public_key=abc,userId=alice" {
		t.Errorf("frozen DSC changed: %q", got)
	}

	in = header("sentry-trace", stTrace+"-"+stSpan+"-1", "baggage", "userId=alice")
	c = propagate.Extract(in)
	out = in.Clone()
	propagate.Inject(out, c, propagate.DefaultFormats)
	if got, want := out.Get("baggage"), "userId=alice,sentry-trace_id="+stTrace+",sentry-sampled=true"; got != want {
		t.Errorf("baggage = %q, want %q", got, want)
	}

	// Without FormatSentry the baggage is forwarded as is.
	out = in.Clone()
	propagate.Inject(out, c, propagate.FormatW3C)
	if got := out.Get("baggage"); got != "userId=alice" {
		t.Errorf("baggage without sentry = %q", got)
	}
}

func TestInjectDeferred(t *testing.T) {
	c := propagate.Extract(header("sentry-trace", stTrace+"-"+stSpan))
	out := http.Header{}
	propagate.Inject(out, c, propagate.DefaultFormats|propagate.FormatB3Multi)
	if f := out.Get("traceparent"); !strings.HasSuffix(f, "-00") {
		t.Errorf("deferred traceparent %q, want flags 00", f)
	}
	if s := out.Get("sentry-trace"); len(s) != 49 {
		t.Errorf("deferred sentry-trace %q, want no sampled field", s)
	}
	if b := out.Get("b3"); strings.Count(b, "-") != 1 {
		t.Errorf("deferred b3 %q, want ids only", b)
	}
	if out.Get("X-B3-Sampled") != "" || out.Get("X-B3-Flags") != "" {
		t.Errorf("deferred multi wrote a decision: %v", out)
	}
	if strings.Contains(out.Get("baggage"), "sentry-sampled") {
		t.Errorf("deferred baggage has sentry-sampled: %q", out.Get("baggage"))
	}
}

func TestInjectValuesIndependent(t *testing.T) {
	out := http.Header{}
	c := propagate.Extract(header("tracestate", "a=1"))
	c.TraceState = "a=1"
	propagate.Inject(out, c, propagate.DefaultFormats|propagate.FormatB3Multi)
	before := out.Clone()
	// Appending to one header's values must not leak into another's.
	for k := range out {
		out[k] = append(out[k], "extra")
	}
	for k, v := range before {
		if got := out[k]; len(got) != len(v)+1 || got[0] != v[0] {
			t.Errorf("%s = %q, want %q + extra", k, got, v)
		}
	}
}

func TestHeaderKeysCanonical(t *testing.T) {
	// Extract and Inject index http.Header directly; this is what real
	// requests look like after net/http parses them.
	var got propagate.Context
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = propagate.Extract(r.Header)
	}))
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header["traceparent"] = []string{"\t00-" + tpTrace + "-" + tpParent + "-01 "} // raw lowercase key on the wire
	req.Header["tracestate"] = []string{"foo=1"}
	req.Header["baggage"] = []string{"k=v"}
	req.Header["x-request-id"] = []string{"rid"}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Source != propagate.FormatW3C || got.TraceID.String() != tpTrace || got.TraceState != "foo=1" ||
		got.Baggage != "k=v" || got.RequestID != "rid" {
		t.Errorf("Extract over HTTP = %+v", got)
	}

	for _, k := range []string{"Traceparent", "Tracestate", "Baggage", "Sentry-Trace", "B3", "X-B3-Traceid",
		"X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags", "X-Request-Id"} {
		if http.CanonicalHeaderKey(k) != k {
			t.Errorf("%s is not canonical", k)
		}
	}
	out := http.Header{}
	propagate.Inject(out, got, propagate.DefaultFormats|propagate.FormatB3Multi)
	for k := range out {
		if http.CanonicalHeaderKey(k) != k {
			t.Errorf("Inject wrote non-canonical key %q", k)
		}
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("allocation counts differ under the race detector")
	}
	in := typicalHeader()
	out := in.Clone()
	if n := testing.AllocsPerRun(100, func() { _ = propagate.Extract(in) }); n != 0 {
		t.Errorf("Extract allocs = %v, want 0", n)
	}
	c := propagate.Extract(in)
	if n := testing.AllocsPerRun(100, func() { propagate.Inject(out, c, propagate.DefaultFormats) }); n > 2 {
		t.Errorf("Inject allocs = %v, want <= 2", n)
	}
}

// typicalHeader is what a browser or SDK usually sends through the proxy.
func typicalHeader() http.Header {
	return header(
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
		"baggage", "userId=alice,serverNode=DF%2028,isProduction=false",
		"X-Request-ID", "0b8ac3e6-5b4a-4c39-9ad9-0c8d1c4f3c7e",
		"User-Agent", "Mozilla/5.0",
		"Accept", "application/json",
	)
}

package propagate_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

func trimOWS(s string) string { return strings.Trim(s, " \t") }

func FuzzParseTraceParent(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-future",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\t",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, ok := propagate.ParseTraceParent(s)
		if !ok {
			if tp != (propagate.TraceParent{}) {
				t.Fatalf("failed parse returned %+v", tp)
			}
			return
		}
		if !tp.IsValid() || tp.Version == 0xff {
			t.Fatalf("parsed an invalid value %+v from %q", tp, s)
		}
		out := tp.Format()
		if len(out) != 55 || !strings.HasPrefix(out, "00-") {
			t.Fatalf("Format() = %q", out)
		}
		if tp.Version == 0 && out != trimOWS(s) {
			t.Fatalf("version 00 %q formatted as %q", s, out)
		}
		if !strings.HasPrefix(trimOWS(s)[3:], out[3:]) {
			t.Fatalf("Format() %q does not match the fields of %q", out, s)
		}
		back, ok := propagate.ParseTraceParent(out)
		want := tp
		want.Version = 0
		if !ok || back != want {
			t.Fatalf("re-parse of %q = %+v, %v; want %+v", out, back, ok, want)
		}
	})
}

func FuzzParseTraceState(f *testing.F) {
	f.Add("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "")
	f.Add("foo=1 \t , \t bar=2", "baz=3")
	f.Add("t@v=1,foo=1,foo=2", "a= b")
	f.Add("foo@=1", "x=1")
	f.Fuzz(func(t *testing.T, a, b string) {
		values := []string{a, b}
		ts := propagate.ParseTraceState(values)
		out := ts.Format()
		if ts.Len() > propagate.MaxTraceStateMembers {
			t.Fatalf("Len() = %d", ts.Len())
		}
		if (out == "") != (ts.Len() == 0) {
			t.Fatalf("Len() = %d but Format() = %q", ts.Len(), out)
		}
		back := propagate.ParseTraceState([]string{out})
		if back.Format() != out || back.Len() != ts.Len() {
			t.Fatalf("re-parse of %q = %q", out, back.Format())
		}
		for k, v := range ts.All() {
			if got, ok := back.Get(k); !ok || got != v {
				t.Fatalf("key %q: %q, %v after re-parse; want %q", k, got, ok, v)
			}
		}
		if fast := propagate.NormalizeTraceState(values); fast != out {
			t.Fatalf("fast path %q != %q for %q", fast, out, values)
		}
		if fast := propagate.NormalizeTraceState(values[:1]); fast != propagate.ParseTraceState(values[:1]).Format() {
			t.Fatalf("fast path %q disagrees for %q", fast, a)
		}
	})
}

func FuzzParseBaggage(f *testing.F) {
	f.Add("userId=alice,serverNode=DF%2028,isProduction=false", "")
	f.Add("key1=value1;property1;property2, key2 = value2", "key3=value3; propertyKey=propertyValue")
	f.Add("sentry-trace_id=abc,k=v", "k=a=b;;p")
	f.Add(`k="v",=x,a b=1`, "k=")
	f.Fuzz(func(t *testing.T, a, b string) {
		values := []string{a, b}
		bg := propagate.ParseBaggage(values)
		out := bg.Format()
		if len(out) > propagate.MaxBaggageBytes {
			t.Fatalf("limit exceeded: %d bytes", len(out))
		}
		if in := propagate.ParseBaggage([]string{a + "," + b}); len(a)+1+len(b) <= propagate.MaxBaggageBytes && in.Len() != bg.Len() {
			t.Fatalf("members dropped under the limit: %d of %d kept", bg.Len(), in.Len())
		}
		back := propagate.ParseBaggage([]string{out})
		if back.Format() != out || back.Len() != bg.Len() {
			t.Fatalf("re-parse of %q = %q", out, back.Format())
		}
		if fast := propagate.NormalizeBaggage(values); fast != out {
			t.Fatalf("fast path %q != %q for %q", fast, out, values)
		}
		if fast := propagate.NormalizeBaggage(values[:1]); fast != propagate.ParseBaggage(values[:1]).Format() {
			t.Fatalf("fast path %q disagrees for %q", fast, a)
		}

		// Sentry DSC: appended only when absent, never replacing anything.
		id := trace.NewTraceID(nil)
		dsc := propagate.SentryDSC{TraceID: id, Transaction: b, Sampled: trace.SamplingAccept}
		withDSC := propagate.AppendSentryBaggage(out, dsc)
		hadSentry := false
		for m := range bg.All() {
			hadSentry = hadSentry || strings.HasPrefix(m.Key, "sentry-")
		}
		if hadSentry && withDSC != out {
			t.Fatalf("frozen DSC changed: %q -> %q", out, withDSC)
		}
		if !strings.HasPrefix(withDSC, out) || len(withDSC) > propagate.MaxBaggageBytes {
			t.Fatalf("AppendSentryBaggage(%q) = %q", out, withDSC)
		}
		parsed := propagate.ParseBaggage([]string{withDSC})
		if parsed.Format() != withDSC {
			t.Fatalf("AppendSentryBaggage produced invalid baggage %q", withDSC)
		}
	})
}

func FuzzParseSentryTrace(f *testing.F) {
	f.Add("771a43a4192642f0b136d5159a501700-b7ad6b7169203331")
	f.Add("771a43a4192642f0b136d5159a501700-b7ad6b7169203331-1")
	f.Add(" 771a43a4192642f0b136d5159a501700-b7ad6b7169203331-0")
	f.Add("771a43a4192642f0b136d5159a501700-b7ad6b7169203331-2")
	f.Fuzz(func(t *testing.T, s string) {
		st, ok := propagate.ParseSentryTrace(s)
		if !ok {
			return
		}
		if !st.TraceID.IsValid() || !st.SpanID.IsValid() || st.Sampling == trace.SamplingDebug {
			t.Fatalf("parsed invalid %+v", st)
		}
		out := st.Format()
		if out != trimOWS(s) {
			t.Fatalf("Format() = %q, input %q", out, s)
		}
		if back, ok := propagate.ParseSentryTrace(out); !ok || back != st {
			t.Fatalf("re-parse of %q = %+v, %v", out, back, ok)
		}
	})
}

func FuzzParseB3(f *testing.F) {
	f.Add("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
		"80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "05e3ac9a4f6e3b90", "1", "")
	f.Add("64fe8b2a57d3eff7-e457b5a2e4d86bd1-d", "64fe8b2a57d3eff7", "e457b5a2e4d86bd1", "", "true", "1")
	f.Add("0", "", "", "", "0", "")
	f.Add("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1", "x", "e457b5a2e4d86bd1", "0", "", "")
	f.Fuzz(func(t *testing.T, single, tid, sid, pid, sampled, flags string) {
		if b, ok := propagate.ParseB3(single); ok {
			if b.TraceID.IsValid() != b.SpanID.IsValid() {
				t.Fatalf("half a context: %+v", b)
			}
			if !b.HasIDs() && b.Sampling == trace.SamplingDeferred {
				t.Fatalf("parsed nothing from %q", single)
			}
			out := b.Format()
			back, ok := propagate.ParseB3(out)
			if !ok || back != b {
				t.Fatalf("re-parse of %q (from %q) = %+v, %v; want %+v", out, single, back, ok, b)
			}
		}

		h := http.Header{}
		for k, v := range map[string]string{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-ParentSpanId": pid,
			"X-B3-Sampled": sampled, "X-B3-Flags": flags} {
			if v != "" {
				h.Set(k, v)
			}
		}
		b, ok := propagate.ParseB3Multi(h)
		if !ok {
			return
		}
		if b.TraceID.IsValid() != b.SpanID.IsValid() {
			t.Fatalf("half a context: %+v", b)
		}
		out := http.Header{}
		b.SetMulti(out)
		if back, ok := propagate.ParseB3Multi(out); !ok || back != b {
			t.Fatalf("multi round trip %v -> %+v, %v; want %+v", out, back, ok, b)
		}
		// The single form carries the same context (a parent needs a
		// decision in front of it).
		if b.Sampling == trace.SamplingDeferred {
			b.ParentSpanID = trace.SpanID{}
		}
		if back, ok := propagate.ParseB3(b.Format()); b.Format() != "" && (!ok || back != b) {
			t.Fatalf("single form %q -> %+v, %v; want %+v", b.Format(), back, ok, b)
		}
	})
}

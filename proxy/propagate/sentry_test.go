package propagate_test

import (
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

func TestParseSentryTrace(t *testing.T) {
	tid, sid := "771a43a4192642f0b136d5159a501700", "b7ad6b7169203331"
	tests := []struct {
		in       string
		ok       bool
		sampling trace.Sampling
	}{
		{tid + "-" + sid, true, trace.SamplingDeferred},
		{tid + "-" + sid + "-1", true, trace.SamplingAccept},
		{tid + "-" + sid + "-0", true, trace.SamplingDeny},
		{" " + tid + "-" + sid + "-1\t", true, trace.SamplingAccept},

		{"", false, 0},
		{tid, false, 0},
		{tid + "-" + sid + "-", false, 0},
		{tid + "-" + sid + "-2", false, 0},
		{tid + "-" + sid + "-true", false, 0},
		{tid + "-" + sid + "-10", false, 0},
		{tid + "-" + sid + "1", false, 0},
		{tid + "_" + sid, false, 0},
		{strings.ToUpper(tid) + "-" + sid, false, 0},
		{tid + "-" + strings.ToUpper(sid), false, 0},
		{strings.Repeat("0", 32) + "-" + sid, false, 0},
		{tid + "-" + strings.Repeat("0", 16), false, 0},
		{tid[:31] + "-" + sid + "-1", false, 0},
		{"00-" + tid + "-" + sid + "-01", false, 0}, // a traceparent is not a sentry-trace
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			st, ok := propagate.ParseSentryTrace(tt.in)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if st.TraceID.String() != tid || st.SpanID.String() != sid || st.Sampling != tt.sampling {
				t.Errorf("got %+v", st)
			}
			if got, want := st.Format(), strings.TrimSpace(tt.in); got != want {
				t.Errorf("Format() = %q, want %q", got, want)
			}
		})
	}
	debug := propagate.SentryTrace{TraceID: mustTraceID(t, tid), SpanID: mustSpanID(t, sid), Sampling: trace.SamplingDebug}
	if got := debug.Format(); got != tid+"-"+sid+"-1" {
		t.Errorf("debug Format() = %q, want sampled 1", got)
	}
}

func TestAppendSentryBaggage(t *testing.T) {
	tid := mustTraceID(t, "771a43a4192642f0b136d5159a501700")
	dsc := propagate.SentryDSC{TraceID: tid, Sampled: trace.SamplingAccept}
	tests := []struct {
		name    string
		baggage string
		dsc     propagate.SentryDSC
		want    string
	}{
		{"empty baggage", "", dsc, "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sampled=true"},
		{"appends after other members", "userId=alice", dsc, "userId=alice,sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sampled=true"},
		{"normalises the rest", "userId = alice ,", dsc, "userId=alice,sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sampled=true"},
		{"frozen: existing sentry member", "sentry-trace_id=abc,userId=alice", dsc, "sentry-trace_id=abc,userId=alice"},
		{"frozen: any sentry member", "userId=alice, sentry-public_key=k", dsc, "userId=alice, sentry-public_key=k"},
		{"no trace id: unchanged", "a=1", propagate.SentryDSC{}, "a=1"},
		{"deny", "", propagate.SentryDSC{TraceID: tid, Sampled: trace.SamplingDeny}, "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sampled=false"},
		{"deferred leaves sampled out", "", propagate.SentryDSC{TraceID: tid}, "sentry-trace_id=771a43a4192642f0b136d5159a501700"},
		{"all fields, encoded", "", propagate.SentryDSC{
			TraceID: tid, PublicKey: "49d0f7386ad645858ae85020e393bef3", Release: "shop@1.0.0",
			Environment: "dev", Transaction: "GET /cart, 50%", SampleRate: "0.5", Sampled: trace.SamplingAccept,
		}, "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key=49d0f7386ad645858ae85020e393bef3," +
			"sentry-release=shop@1.0.0,sentry-environment=dev,sentry-transaction=GET%20/cart%2C%2050%25," +
			"sentry-sample_rate=0.5,sentry-sampled=true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := propagate.AppendSentryBaggage(tt.baggage, tt.dsc)
			if got != tt.want {
				t.Errorf("got\n  %q\nwant\n  %q", got, tt.want)
			}
			if propagate.ParseBaggage([]string{got}).Len() == 0 && got != "" {
				t.Errorf("result is not valid baggage: %q", got)
			}
		})
	}

	// Near the byte limit, the sentry members that do not fit are left out.
	full := "a=" + strings.Repeat("x", propagate.MaxBaggageBytes-2-len(",sentry-trace_id=")-32)
	got := propagate.AppendSentryBaggage(full, dsc)
	if len(got) != propagate.MaxBaggageBytes || !strings.HasSuffix(got, ",sentry-trace_id="+tid.String()) {
		t.Errorf("near limit: len %d, suffix %q", len(got), got[len(got)-60:])
	}
}

package propagate_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// Ids from the B3 specification's examples.
const (
	b3Trace  = "80f198ee56343ba864fe8b2a57d3eff7"
	b3Span   = "e457b5a2e4d86bd1"
	b3Parent = "05e3ac9a4f6e3b90"
)

func TestParseB3(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		ok     bool
		trace  string // hex of the padded 128-bit id, "" when no ids
		parent string
		s      trace.Sampling
		format string // "" means same as input (trimmed)
	}{
		{"ids only", b3Trace + "-" + b3Span, true, b3Trace, "", trace.SamplingDeferred, ""},
		{"accept", b3Trace + "-" + b3Span + "-1", true, b3Trace, "", trace.SamplingAccept, ""},
		{"deny", b3Trace + "-" + b3Span + "-0", true, b3Trace, "", trace.SamplingDeny, ""},
		{"debug", b3Trace + "-" + b3Span + "-d", true, b3Trace, "", trace.SamplingDebug, ""},
		{"with parent", b3Trace + "-" + b3Span + "-1-" + b3Parent, true, b3Trace, b3Parent, trace.SamplingAccept, ""},
		{"64-bit trace id", "64fe8b2a57d3eff7-" + b3Span + "-1", true, "000000000000000064fe8b2a57d3eff7", "", trace.SamplingAccept,
			"000000000000000064fe8b2a57d3eff7-" + b3Span + "-1"},
		{"OWS", " \t" + b3Trace + "-" + b3Span + "-1 ", true, b3Trace, "", trace.SamplingAccept, b3Trace + "-" + b3Span + "-1"},
		{"deny only", "0", true, "", "", trace.SamplingDeny, ""},
		{"accept only", "1", true, "", "", trace.SamplingAccept, ""},
		{"debug only", "d", true, "", "", trace.SamplingDebug, ""},

		{"empty", "", false, "", "", 0, ""},
		{"bad sampling only", "2", false, "", "", 0, ""},
		{"trace id only", b3Trace, false, "", "", 0, ""},
		{"trailing dash", b3Trace + "-" + b3Span + "-", false, "", "", 0, ""},
		{"bad sampling", b3Trace + "-" + b3Span + "-2", false, "", "", 0, ""},
		{"sampling true", b3Trace + "-" + b3Span + "-true", false, "", "", 0, ""},
		{"parent without sampling", b3Trace + "-" + b3Span + "-" + b3Parent, false, "", "", 0, ""},
		{"parent too short", b3Trace + "-" + b3Span + "-1-" + b3Parent[:15], false, "", "", 0, ""},
		{"parent too long", b3Trace + "-" + b3Span + "-1-" + b3Parent + "0", false, "", "", 0, ""},
		{"parent zero", b3Trace + "-" + b3Span + "-1-0000000000000000", false, "", "", 0, ""},
		{"extra field", b3Trace + "-" + b3Span + "-1-" + b3Parent + "-x", false, "", "", 0, ""},
		{"trace id 20 hex", b3Trace[:20] + "-" + b3Span, false, "", "", 0, ""},
		{"trace id zero", strings.Repeat("0", 32) + "-" + b3Span, false, "", "", 0, ""},
		{"64-bit trace id zero", strings.Repeat("0", 16) + "-" + b3Span, false, "", "", 0, ""},
		{"span id zero", b3Trace + "-" + strings.Repeat("0", 16), false, "", "", 0, ""},
		{"span id short", b3Trace + "-" + b3Span[:15], false, "", "", 0, ""},
		{"uppercase", strings.ToUpper(b3Trace) + "-" + b3Span, false, "", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ok := propagate.ParseB3(tt.in)
			if ok != tt.ok {
				t.Fatalf("ParseB3(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if !ok {
				return
			}
			if b.Sampling != tt.s {
				t.Errorf("Sampling = %v, want %v", b.Sampling, tt.s)
			}
			if tt.trace == "" {
				if b.HasIDs() {
					t.Errorf("HasIDs() = true for %q", tt.in)
				}
			} else if b.TraceID.String() != tt.trace || b.SpanID.String() != b3Span {
				t.Errorf("ids = %s, %s", b.TraceID, b.SpanID)
			}
			if tt.parent != "" && b.ParentSpanID.String() != tt.parent {
				t.Errorf("parent = %s, want %s", b.ParentSpanID, tt.parent)
			}
			want := tt.format
			if want == "" {
				want = tt.in
			}
			if got := b.Format(); got != want {
				t.Errorf("Format() = %q, want %q", got, want)
			}
		})
	}
}

func TestParseB3Multi(t *testing.T) {
	tests := []struct {
		name   string
		h      map[string]string
		ok     bool
		ids    bool
		s      trace.Sampling
		parent string
	}{
		{"spec example", map[string]string{"X-B3-TraceId": b3Trace, "X-B3-ParentSpanId": b3Parent, "X-B3-SpanId": b3Span, "X-B3-Sampled": "1"},
			true, true, trace.SamplingAccept, b3Parent},
		{"deferred", map[string]string{"X-B3-TraceId": b3Trace, "X-B3-SpanId": b3Span}, true, true, trace.SamplingDeferred, ""},
		{"deny", map[string]string{"X-B3-TraceId": b3Trace, "X-B3-SpanId": b3Span, "X-B3-Sampled": "0"}, true, true, trace.SamplingDeny, ""},
		{"lenient true", map[string]string{"X-B3-TraceId": b3Trace, "X-B3-SpanId": b3Span, "X-B3-Sampled": "true"}, true, true, trace.SamplingAccept, ""},
		{"lenient false", map[string]string{"X-B3-TraceId": b3Trace, "X-B3-SpanId": b3Span, "X-B3-Sampled": "false"}, true, true, trace.SamplingDeny, ""},
		{"debug flag", map[string]string{"X-B3-TraceId": b3Trace, "X-B3-SpanId": b3Span, "X-B3-Flags": "1"}, true, true, trace.SamplingDebug, ""},
		{"64-bit", map[string]string{"X-B3-TraceId": "64fe8b2a57d3eff7", "X-B3-SpanId": b3Span}, true, true, trace.SamplingDeferred, ""},
		{"sampled only", map[string]string{"X-B3-Sampled": "0"}, true, false, trace.SamplingDeny, ""},
		{"nothing", map[string]string{}, false, false, 0, ""},
		{"trace id only", map[string]string{"X-B3-TraceId": b3Trace}, false, false, 0, ""},
		{"span id only", map[string]string{"X-B3-SpanId": b3Span}, false, false, 0, ""},
		{"bad trace id", map[string]string{"X-B3-TraceId": "xyz", "X-B3-SpanId": b3Span}, false, false, 0, ""},
		{"bad parent", map[string]string{"X-B3-TraceId": b3Trace, "X-B3-SpanId": b3Span, "X-B3-ParentSpanId": "0"}, false, false, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			b, ok := propagate.ParseB3Multi(h)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if b.HasIDs() != tt.ids || b.Sampling != tt.s {
				t.Errorf("HasIDs, Sampling = %v, %v; want %v, %v", b.HasIDs(), b.Sampling, tt.ids, tt.s)
			}
			if tt.parent != "" && b.ParentSpanID.String() != tt.parent {
				t.Errorf("parent = %s", b.ParentSpanID)
			}
			// SetMulti then ParseB3Multi gives the same context back.
			out := http.Header{}
			out.Set("X-B3-Sampled", "stale")
			b.SetMulti(out)
			back, ok := propagate.ParseB3Multi(out)
			if !ok || back != b {
				t.Errorf("round trip: %+v, %v; want %+v (headers %v)", back, ok, b, out)
			}
			if b.Sampling == trace.SamplingDebug && out.Get("X-B3-Sampled") != "" {
				t.Error("debug must not also send X-B3-Sampled")
			}
		})
	}
}

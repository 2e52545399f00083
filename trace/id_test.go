package trace_test

import (
	"strings"
	"testing"

	"github.com/devstack/devstack/trace"
)

const specTraceID = "4bf92f3577b34da6a3ce929d0e0e4736" // the W3C spec's example ids
const specParentID = "00f067aa0ba902b7"

func mustTraceID(t testing.TB, s string) trace.TraceID {
	t.Helper()
	id, ok := trace.ParseTraceID(s)
	if !ok {
		t.Fatalf("ParseTraceID(%q) failed", s)
	}
	return id
}

func TestIDs(t *testing.T) {
	var zt trace.TraceID
	var zs trace.SpanID
	if zt.IsValid() || zs.IsValid() {
		t.Fatal("zero ids must be invalid")
	}
	if got := zt.String(); got != strings.Repeat("0", 32) {
		t.Errorf("zero TraceID.String() = %q", got)
	}
	tid := mustTraceID(t, specTraceID)
	if tid.String() != specTraceID {
		t.Errorf("String() = %q", tid)
	}
	if b, _ := tid.MarshalText(); string(b) != specTraceID {
		t.Errorf("MarshalText() = %q", b)
	}
	for _, bad := range []string{"", strings.Repeat("0", 32), strings.ToUpper(specTraceID), specTraceID + "0", "g" + specTraceID[1:]} {
		if _, ok := trace.ParseTraceID(bad); ok {
			t.Errorf("ParseTraceID(%q) succeeded", bad)
		}
	}
	for _, bad := range []string{"", strings.Repeat("0", 16), "00F067AA0BA902B7", specParentID[:15]} {
		if _, ok := trace.ParseSpanID(bad); ok {
			t.Errorf("ParseSpanID(%q) succeeded", bad)
		}
	}
}

func TestNewIDs(t *testing.T) {
	seen := make(map[trace.SpanID]bool)
	for range 1000 {
		s := trace.NewSpanID(nil)
		if !s.IsValid() || seen[s] {
			t.Fatalf("NewSpanID returned %v (duplicate or zero)", s)
		}
		seen[s] = true
		if !trace.NewTraceID(nil).IsValid() {
			t.Fatal("NewTraceID returned zero")
		}
	}
	if s := trace.NewSpanID(&zeroThenCounter{}); !s.IsValid() {
		t.Error("NewSpanID with zero source returned zero id")
	}
	if id := trace.NewTraceID(&zeroThenCounter{}); !id.IsValid() {
		t.Error("NewTraceID with zero source returned zero id")
	}
}

// zeroThenCounter yields zeros first, to show that generated ids are never
// the invalid zero id.
type zeroThenCounter struct{ n uint64 }

func (z *zeroThenCounter) Uint64() uint64 {
	z.n++
	if z.n <= 3 {
		return 0
	}
	return z.n
}

func TestSamplingString(t *testing.T) {
	for s, want := range map[trace.Sampling]string{
		trace.SamplingDeferred: "deferred", trace.SamplingDeny: "deny",
		trace.SamplingAccept: "accept", trace.SamplingDebug: "debug", 9: "Sampling(9)",
	} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

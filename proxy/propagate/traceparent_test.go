package propagate_test

import (
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

const (
	specTraceID  = "4bf92f3577b34da6a3ce929d0e0e4736" // example ids from the W3C spec
	specParentID = "00f067aa0ba902b7"
)

func mustTraceID(t testing.TB, s string) trace.TraceID {
	t.Helper()
	id, ok := trace.ParseTraceID(s)
	if !ok {
		t.Fatalf("ParseTraceID(%q) failed", s)
	}
	return id
}

func mustSpanID(t testing.TB, s string) trace.SpanID {
	t.Helper()
	id, ok := trace.ParseSpanID(s)
	if !ok {
		t.Fatalf("ParseSpanID(%q) failed", s)
	}
	return id
}

func TestParseTraceParent(t *testing.T) {
	tid, pid := specTraceID, specParentID
	valid := "00-" + tid + "-" + pid + "-01"
	tests := []struct {
		name    string
		in      string
		ok      bool
		version byte
		flags   byte
	}{
		{"spec example sampled", valid, true, 0, 0x01},
		{"spec example not sampled", "00-" + tid + "-" + pid + "-00", true, 0, 0x00},
		{"random trace id flag", "00-" + tid + "-" + pid + "-03", true, 0, 0x03},
		{"reserved flags kept when parsing", "00-" + tid + "-" + pid + "-ff", true, 0, 0xff},
		{"leading space", " " + valid, true, 0, 1},
		{"leading tab", "\t" + valid, true, 0, 1},
		{"trailing space", valid + " ", true, 0, 1},
		{"trailing tab", valid + "\t", true, 0, 1},
		{"surrounding mixed OWS", "\t " + valid + " \t", true, 0, 1},

		{"empty", "", false, 0, 0},
		{"version 00 too long", valid + "0", false, 0, 0},
		{"version 00 with trailing dot", valid + ".", false, 0, 0},
		{"version 00 with future fields", valid + "-what-the-future-will-be-like", false, 0, 0},
		{"version 00 with trailing dash", valid + "-", false, 0, 0},
		{"too short", valid[:54], false, 0, 0},
		{"version ff", "ff-" + tid + "-" + pid + "-01", false, 0, 0},
		{"version too long", "000-" + tid + "-" + pid + "-01", false, 0, 0},
		{"version too short", "0-" + tid + "-" + pid + "-01", false, 0, 0},
		{"version illegal char first", ".0-" + tid + "-" + pid + "-01", false, 0, 0},
		{"version illegal char second", "0.-" + tid + "-" + pid + "-01", false, 0, 0},
		{"version uppercase", "0A-" + tid + "-" + pid + "-01", false, 0, 0},
		{"trace id all zero", "00-00000000000000000000000000000000-" + pid + "-01", false, 0, 0},
		{"trace id uppercase", "00-" + strings.ToUpper(tid) + "-" + pid + "-01", false, 0, 0},
		{"trace id illegal first char", "00-." + tid[1:] + "-" + pid + "-01", false, 0, 0},
		{"trace id illegal last char", "00-" + tid[:31] + ".-" + pid + "-01", false, 0, 0},
		{"trace id too long", "00-" + tid + "3-" + pid + "-01", false, 0, 0},
		{"trace id too short", "00-" + tid[:31] + "-" + pid + "-01", false, 0, 0},
		{"parent id all zero", "00-" + tid + "-0000000000000000-01", false, 0, 0},
		{"parent id uppercase", "00-" + tid + "-00F067AA0BA902B7-01", false, 0, 0},
		{"parent id illegal first char", "00-" + tid + "-." + pid[1:] + "-01", false, 0, 0},
		{"parent id illegal last char", "00-" + tid + "-" + pid[:15] + ".-01", false, 0, 0},
		{"parent id too long", "00-" + tid + "-" + pid + "7-01", false, 0, 0},
		{"parent id too short", "00-" + tid + "-" + pid[:15] + "-01", false, 0, 0},
		{"flags illegal first char", "00-" + tid + "-" + pid + "-.0", false, 0, 0},
		{"flags illegal second char", "00-" + tid + "-" + pid + "-0.", false, 0, 0},
		{"flags uppercase", "00-" + tid + "-" + pid + "-0A", false, 0, 0},
		{"flags too long", "00-" + tid + "-" + pid + "-001", false, 0, 0},
		{"flags too short", "00-" + tid + "-" + pid + "-1", false, 0, 0},
		{"separator underscore", "00_" + tid + "-" + pid + "-01", false, 0, 0},
		{"separator missing before flags", "00-" + tid + "-" + pid + "+01", false, 0, 0},
		{"inner space", "00- " + tid[1:] + "-" + pid + "-01", false, 0, 0},
		{"newline", valid + "\n", false, 0, 0},

		{"future version", "cc-" + tid + "-" + pid + "-01", true, 0xcc, 1},
		{"future version with extra fields", "cc-" + tid + "-" + pid + "-01-what-the-future-will-be-like", true, 0xcc, 1},
		{"future version with empty extra field", "cc-" + tid + "-" + pid + "-01-", true, 0xcc, 1},
		{"future version 01", "01-" + tid + "-" + pid + "-00", true, 0x01, 0},
		{"future version fe", "fe-" + tid + "-" + pid + "-01", true, 0xfe, 1},
		{"future version extra without dash", "cc-" + tid + "-" + pid + "-01.what-the-future-will-be-like", false, 0, 0},
		{"future version flags too long", "cc-" + tid + "-" + pid + "-011", false, 0, 0},
		{"future version too short", "cc-" + tid + "-" + pid + "-1", false, 0, 0},
		{"future version zero trace id", "cc-00000000000000000000000000000000-" + pid + "-01", false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, ok := propagate.ParseTraceParent(tt.in)
			if ok != tt.ok {
				t.Fatalf("ParseTraceParent(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if !ok {
				if tp != (propagate.TraceParent{}) {
					t.Errorf("failed parse returned non-zero %+v", tp)
				}
				return
			}
			if tp.Version != tt.version || tp.Flags != tt.flags {
				t.Errorf("version, flags = %02x, %02x; want %02x, %02x", tp.Version, tp.Flags, tt.version, tt.flags)
			}
			if tp.TraceID.String() != tid || tp.ParentID.String() != pid {
				t.Errorf("ids = %s, %s; want %s, %s", tp.TraceID, tp.ParentID, tid, pid)
			}
			want := "00-" + tid + "-" + pid + "-" + tt.in[strings.Index(tt.in, pid)+17:][:2]
			if got := tp.Format(); got != want {
				t.Errorf("Format() = %q, want %q (always version 00)", got, want)
			}
		})
	}
}

func TestTraceParentFlags(t *testing.T) {
	tp, ok := propagate.ParseTraceParent("00-" + specTraceID + "-" + specParentID + "-02")
	if !ok {
		t.Fatal("parse failed")
	}
	if tp.Sampled() || !tp.RandomTraceID() {
		t.Fatalf("Sampled, RandomTraceID = %v, %v; want false, true", tp.Sampled(), tp.RandomTraceID())
	}
	on := tp.WithSampled(true)
	if !on.Sampled() || !on.RandomTraceID() || on.Flags != 0x03 {
		t.Errorf("WithSampled(true).Flags = %02x, want 03 (random flag kept)", on.Flags)
	}
	if off := on.WithSampled(false); off.Flags != 0x02 {
		t.Errorf("WithSampled(false).Flags = %02x, want 02", off.Flags)
	}
	if !tp.IsValid() || (propagate.TraceParent{}).IsValid() {
		t.Error("IsValid wrong")
	}
}

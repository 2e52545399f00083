package tracectx

import (
	"net/http"
	"testing"
)

func TestExtract(t *testing.T) {
	const (
		trace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent = "00f067aa0ba902b7"
	)
	tests := []struct {
		name      string
		parent    string
		state     []string
		wantCont  bool // continues the incoming trace
		wantState string
		wantFlags string
	}{
		{"valid", "00-" + trace + "-" + parent + "-01", []string{"a=1", "b=2"}, true, "a=1,b=2", "01"},
		{"unsampled", "00-" + trace + "-" + parent + "-00", nil, true, "", "00"},
		{"future version with extra field", "01-" + trace + "-" + parent + "-01-extra", nil, true, "", "01"},
		{"missing", "", []string{"a=1"}, false, "", "01"},
		{"version ff", "ff-" + trace + "-" + parent + "-01", nil, false, "", "01"},
		{"version 00 too long", "00-" + trace + "-" + parent + "-01-x", nil, false, "", "01"},
		{"uppercase", "00-4BF92F3577B34DA6A3CE929D0E0E4736-" + parent + "-01", nil, false, "", "01"},
		{"zero trace id", "00-00000000000000000000000000000000-" + parent + "-01", nil, false, "", "01"},
		{"zero parent id", "00-" + trace + "-0000000000000000-01", []string{"a=1"}, false, "", "01"},
		{"bad separator", "00_" + trace + "-" + parent + "-01", nil, false, "", "01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.parent != "" {
				h.Set(HeaderParent, tt.parent)
			}
			for _, s := range tt.state {
				h.Add(HeaderState, s)
			}
			s := Extract(h)
			if got := s.TraceID == trace; got != tt.wantCont {
				t.Errorf("continues trace = %v, want %v (trace id %s)", got, tt.wantCont, s.TraceID)
			}
			if tt.wantCont && s.ParentID != parent {
				t.Errorf("ParentID = %q, want %q", s.ParentID, parent)
			}
			if !tt.wantCont && s.ParentID != "" {
				t.Errorf("ParentID = %q for a new trace, want empty", s.ParentID)
			}
			if s.State != tt.wantState {
				t.Errorf("State = %q, want %q", s.State, tt.wantState)
			}
			if s.Flags != tt.wantFlags {
				t.Errorf("Flags = %q, want %q", s.Flags, tt.wantFlags)
			}
			if len(s.SpanID) != 16 || allZero(s.SpanID) || s.SpanID == parent {
				t.Errorf("SpanID = %q, want 16 fresh non-zero hex digits", s.SpanID)
			}
			if _, _, _, ok := parse(s.Traceparent()); !ok {
				t.Errorf("Traceparent() = %q does not parse", s.Traceparent())
			}
		})
	}
}

func TestInject(t *testing.T) {
	s := Span{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "b7ad6b7169203331", Flags: "01", State: "a=1"}
	h := http.Header{}
	s.Inject(h)
	if got, want := h.Get(HeaderParent), "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"; got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
	if got := h.Get(HeaderState); got != "a=1" {
		t.Errorf("tracestate = %q, want a=1", got)
	}
	s.State = ""
	h = http.Header{}
	s.Inject(h)
	if len(h.Values(HeaderState)) != 0 {
		t.Errorf("empty tracestate was sent: %q", h.Values(HeaderState))
	}
}

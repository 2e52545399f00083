package trace_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/trace"
)

func TestParseFormats(t *testing.T) {
	tests := []struct {
		in      string
		want    trace.Formats
		wantErr string // substring naming the bad value
	}{
		{"w3c,sentry,b3", trace.DefaultFormats, ""},
		{"w3c", trace.FormatW3C, ""},
		{" W3C , B3Multi ", trace.FormatW3C | trace.FormatB3Multi, ""},
		{"b3,b3multi", trace.FormatB3 | trace.FormatB3Multi, ""},
		{"sentry,sentry", trace.FormatSentry, ""},
		{"none", 0, ""},
		{"w3c,b4", 0, `"b4"`},
		{"zipkin", 0, `"zipkin"`},
		{"", 0, "an empty name"},
		{"w3c,,b3", 0, "an empty name"},
		{"none,w3c", 0, `"none" cannot be combined`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := trace.ParseFormats(tt.in)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, trace.ErrBadFormats) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrBadFormats mentioning %s", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "w3c, sentry, b3, b3multi") {
					t.Errorf("error does not say what is accepted: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
			back, err := trace.ParseFormats(got.String())
			if err != nil || back != got {
				t.Errorf("String() %q does not round-trip: %v, %v", got.String(), back, err)
			}
		})
	}
	if s := (trace.FormatW3C | 0x80).String(); s != "w3c,Formats(0x80)" {
		t.Errorf("unknown bits String() = %q", s)
	}
	if !trace.DefaultFormats.Has(trace.FormatW3C|trace.FormatB3) || trace.DefaultFormats.Has(trace.FormatB3Multi) {
		t.Error("Has wrong")
	}
}

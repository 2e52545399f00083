package propagate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
)

func TestParseFormats(t *testing.T) {
	tests := []struct {
		in      string
		want    propagate.Formats
		wantErr string // substring naming the bad value
	}{
		{"w3c,sentry,b3", propagate.DefaultFormats, ""},
		{"w3c", propagate.FormatW3C, ""},
		{" W3C , B3Multi ", propagate.FormatW3C | propagate.FormatB3Multi, ""},
		{"b3,b3multi", propagate.FormatB3 | propagate.FormatB3Multi, ""},
		{"sentry,sentry", propagate.FormatSentry, ""},
		{"none", 0, ""},
		{"w3c,b4", 0, `"b4"`},
		{"zipkin", 0, `"zipkin"`},
		{"", 0, "an empty name"},
		{"w3c,,b3", 0, "an empty name"},
		{"none,w3c", 0, `"none" cannot be combined`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := propagate.ParseFormats(tt.in)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, propagate.ErrBadFormats) || !strings.Contains(err.Error(), tt.wantErr) {
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
			back, err := propagate.ParseFormats(got.String())
			if err != nil || back != got {
				t.Errorf("String() %q does not round-trip: %v, %v", got.String(), back, err)
			}
		})
	}
	if s := (propagate.FormatW3C | 0x80).String(); s != "w3c,Formats(0x80)" {
		t.Errorf("unknown bits String() = %q", s)
	}
	if !propagate.DefaultFormats.Has(propagate.FormatW3C|propagate.FormatB3) || propagate.DefaultFormats.Has(propagate.FormatB3Multi) {
		t.Error("Has wrong")
	}
}

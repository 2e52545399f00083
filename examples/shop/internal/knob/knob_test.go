package knob

import (
	"net/url"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		query   string
		wantErr bool
		delay   map[string]time.Duration
		fail    map[string]int
	}{
		{query: "", delay: map[string]time.Duration{"payments": 0}},
		{query: "slow=payments:300ms", delay: map[string]time.Duration{"payments": 300 * time.Millisecond, "fraud": 0}},
		{query: "slow=payments:300ms,fraud:1s&fail=inventory:503",
			delay: map[string]time.Duration{"payments": 300 * time.Millisecond, "fraud": time.Second},
			fail:  map[string]int{"inventory": 503, "payments": 0}},
		{query: "fail=inventory:503&fail=fraud:429,inventory:500", fail: map[string]int{"inventory": 500, "fraud": 429}},
		{query: "slow=payments:300ms,,", delay: map[string]time.Duration{"payments": 300 * time.Millisecond}},
		{query: "slow=payments", wantErr: true},
		{query: "slow=:1s", wantErr: true},
		{query: "slow=payments:soon", wantErr: true},
		{query: "slow=payments:-1s", wantErr: true},
		{query: "slow=payments:2h", wantErr: true},
		{query: "fail=inventory:200", wantErr: true},
		{query: "fail=inventory:abc", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse(q)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%q) error = %v, wantErr %v", tt.query, err, tt.wantErr)
			}
			for name, want := range tt.delay {
				if got := s.Delay(name); got != want {
					t.Errorf("Delay(%q) = %s, want %s", name, got, want)
				}
			}
			for name, want := range tt.fail {
				if got := s.Fail(name); got != want {
					t.Errorf("Fail(%q) = %d, want %d", name, got, want)
				}
			}
		})
	}
}

func TestForward(t *testing.T) {
	in := url.Values{"slow": {"payments:1s"}, "fail": {"fraud:503", "inventory:500"}, "item": {"sku-1"}}
	out := url.Values{"amount": {"100"}}
	Forward(out, in)
	want := "amount=100&fail=fraud%3A503&fail=inventory%3A500&slow=payments%3A1s"
	if got := out.Encode(); got != want {
		t.Errorf("Forward = %s, want %s", got, want)
	}
}

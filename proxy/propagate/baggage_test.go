package propagate_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
)

func TestParseBaggage(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"none", nil, ""},
		{"empty", []string{""}, ""},
		{"spec single header", []string{"userId=alice,serverNode=DF%2028,isProduction=false"}, "userId=alice,serverNode=DF%2028,isProduction=false"},
		{"spec split headers", []string{"userId=alice", "serverNode=DF%2028,isProduction=false"}, "userId=alice,serverNode=DF%2028,isProduction=false"},
		{"spec spaces", []string{"userId =   alice", "serverNode = DF%2028, isProduction = false"}, "userId=alice,serverNode=DF%2028,isProduction=false"},
		{"spec properties", []string{"key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue"},
			"key1=value1;property1;property2,key2=value2,key3=value3;propertyKey=propertyValue"},
		{"equals in value", []string{"k=a=b=="}, "k=a=b=="},
		{"empty value", []string{"k="}, "k="},
		{"percent-encoding kept as is", []string{"k=%E2%9C%93%20x"}, "k=%E2%9C%93%20x"},
		{"property with spaces around equals", []string{"k=v; p = q ;r"}, "k=v;p=q;r"},
		{"empty properties dropped", []string{"k=v;;p;"}, "k=v;p"},
		{"duplicates kept in order", []string{"k=1,j=2,k=3"}, "k=1,j=2,k=3"},
		{"empty members skipped", []string{",k=1,, ,j=2,"}, "k=1,j=2"},

		// Malformed members are dropped one by one.
		{"no equals", []string{"k,j=2"}, "j=2"},
		{"empty key", []string{"=v,j=2"}, "j=2"},
		{"space in key", []string{"a b=1,j=2"}, "j=2"},
		{"quote in value", []string{`k="v",j=2`}, "j=2"},
		{"backslash in value", []string{`k=a\b,j=2`}, "j=2"},
		{"space in value", []string{"k=a b,j=2"}, "j=2"},
		{"non-ASCII value", []string{"k=caf\xc3\xa9,j=2"}, "j=2"},
		{"bad property key", []string{"k=v;p q=1,j=2"}, "j=2"},
		{"bad property value", []string{`k=v;p="1",j=2`}, "j=2"},
		{"control char", []string{"k=v\x00,j=2"}, "j=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bg := propagate.ParseBaggage(tt.in)
			if got := bg.Format(); got != tt.want {
				t.Errorf("ParseBaggage(%q).Format() = %q, want %q", tt.in, got, tt.want)
			}
			if again := propagate.ParseBaggage([]string{bg.Format()}).Format(); again != bg.Format() {
				t.Errorf("re-parse = %q, want %q", again, bg.Format())
			}
		})
	}
}

func TestBaggageLimits(t *testing.T) {
	// The count of members is no limit: 300 small ones, 2.6 KB, all go on
	// (the spec's "MUST propagate all list-members" under 8192 bytes).
	var ms []string
	for i := range 300 {
		ms = append(ms, fmt.Sprintf("k%d=%d", i, i))
	}
	all := strings.Join(ms, ",")
	if bg := propagate.ParseBaggage([]string{all}); bg.Len() != 300 || bg.Format() != all {
		t.Errorf("300 members: Len() = %d, Format() = %q", bg.Len(), bg.Format())
	}
	if got := propagate.NormalizeBaggage([]string{all}); got != all {
		t.Errorf("300 members, fast path: %q", got)
	}

	// 8192 bytes exactly fits; one more byte drops the last member whole.
	big := "a=" + strings.Repeat("x", 8190-len(",b=1")) // a=... + ,b=1 = 8192 bytes
	exact := big + ",b=1"
	if len(exact) != propagate.MaxBaggageBytes {
		t.Fatalf("setup: len = %d", len(exact))
	}
	if got := propagate.ParseBaggage([]string{exact}).Format(); got != exact {
		t.Errorf("8192 bytes not kept: len %d", len(got))
	}
	if got := propagate.ParseBaggage([]string{big + ",b=12"}).Format(); got != big {
		t.Errorf("over 8192: got len %d, want the last member dropped (len %d)", len(got), len(big))
	}
	// An oversized member is dropped, later ones that fit are kept.
	huge := "h=" + strings.Repeat("y", 9000)
	if got := propagate.ParseBaggage([]string{"a=1," + huge + ",b=2"}).Format(); got != "a=1,b=2" {
		t.Errorf("oversized member: got %q", got)
	}
	// Over the limit, the sentry-* members are never the ones dropped:
	// Sentry froze them at the head of the trace.
	filler := "f=" + strings.Repeat("z", 8150)
	in := "a=1," + filler + ",sentry-trace_id=771a43a4192642f0b136d5159a501700,b=2,sentry-sampled=true"
	want := "a=1,sentry-trace_id=771a43a4192642f0b136d5159a501700,b=2,sentry-sampled=true"
	if got := propagate.ParseBaggage([]string{in}).Format(); got != want {
		t.Errorf("over the limit with sentry members: got %.80q…, want %q", got, want)
	}
}

func TestBaggageAppendGet(t *testing.T) {
	bg := propagate.ParseBaggage([]string{"a=1;p"})
	m, ok := bg.Get("a")
	if !ok || m.Value != "1" || m.Properties != "p" {
		t.Fatalf("Get = %+v, %v", m, ok)
	}
	out, err := bg.Append(propagate.BaggageMember{Key: "b", Value: "x%20y", Properties: "q=1"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Format() != "a=1;p,b=x%20y;q=1" || bg.Format() != "a=1;p" {
		t.Errorf("Append = %q (receiver %q)", out.Format(), bg.Format())
	}
	if _, err := bg.Append(propagate.BaggageMember{Key: "b", Value: "x y"}); !errors.Is(err, propagate.ErrInvalidBaggageMember) {
		t.Errorf("Append unencoded err = %v", err)
	}
	full := propagate.ParseBaggage([]string{"a=" + strings.Repeat("x", 8190)})
	if _, err := full.Append(propagate.BaggageMember{Key: "b", Value: "1"}); !errors.Is(err, propagate.ErrBaggageLimit) {
		t.Errorf("Append over limit err = %v", err)
	}
	n := 0
	for range out.All() {
		n++
	}
	if n != 2 {
		t.Errorf("All yielded %d", n)
	}
}

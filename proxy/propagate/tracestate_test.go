package propagate_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
)

func TestParseTraceState(t *testing.T) {
	// Every character the spec allows in a key and in a value.
	simpleKey := "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
	tenantKey := simpleKey + "@a-z0-9_-*/"
	var allValue strings.Builder
	for c := byte(0x20); c <= 0x7e; c++ {
		if c != ',' && c != '=' {
			allValue.WriteByte(c)
		}
	}

	var list32, list33 []string
	for i := 1; i <= 33; i++ {
		m := fmt.Sprintf("bar%02d=%02d", i, i)
		if i <= 32 {
			list32 = append(list32, m)
		}
		list33 = append(list33, m)
	}

	tests := []struct {
		name string
		in   []string
		want string // formatted; "" means empty (discarded)
	}{
		{"no header", nil, ""},
		{"empty header", []string{""}, ""},
		{"whitespace only", []string{" \t "}, ""},
		{"single", []string{"rojo=00f067aa0ba902b7"}, "rojo=00f067aa0ba902b7"},
		{"spec example", []string{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{"empty header then value", []string{"", "foo=1"}, "foo=1"},
		{"value then empty header", []string{"foo=1", ""}, "foo=1"},
		{"multiple headers combined in order", []string{"foo=1,bar=2", "rojo=1,congo=2", "baz=3"}, "foo=1,bar=2,rojo=1,congo=2,baz=3"},
		{"empty members", []string{",foo=1,, ,bar=2,"}, "foo=1,bar=2"},
		{"OWS around members", []string{"foo=1 \t , \t bar=2, \t baz=3"}, "foo=1,bar=2,baz=3"},
		{"OWS tabs", []string{"foo=1\t \t,\t \tbar=2,\t \tbaz=3"}, "foo=1,bar=2,baz=3"},
		{"leading space", []string{" foo=1"}, "foo=1"},
		{"trailing tab", []string{"foo=1\t"}, "foo=1"},
		{"leading space of value kept", []string{"foo= 1"}, "foo= 1"},
		{"inner space of value kept", []string{"foo=a b"}, "foo=a b"},
		{"all key chars", []string{simpleKey + "=1"}, simpleKey + "=1"},
		{"all key chars multi-tenant", []string{tenantKey + "=1"}, tenantKey + "=1"},
		{"all value chars", []string{"foo=" + allValue.String()}, "foo=" + allValue.String()},
		{"tenant starts with digit", []string{"1tenant@sys=1"}, "1tenant@sys=1"},
		{"simple key starts with digit (Level 2)", []string{"1foo=1,9=2"}, "1foo=1,9=2"},
		{"key 256", []string{"foo=1", strings.Repeat("z", 256) + "=1"}, "foo=1," + strings.Repeat("z", 256) + "=1"},
		{"tenant 241 system 14", []string{"foo=1", strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14) + "=1"}, "foo=1," + strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14) + "=1"},
		{"value 256", []string{"foo=" + strings.Repeat("v", 256)}, "foo=" + strings.Repeat("v", 256)},
		{"32 members", list32, strings.Join(list32, ",")},

		// Whole header discarded when any member is malformed.
		{"key 257", []string{"foo=1", strings.Repeat("z", 257) + "=1"}, ""},
		{"tenant 242", []string{"foo=1", strings.Repeat("t", 242) + "@v=1"}, ""},
		{"system 15", []string{"foo=1", "t@" + strings.Repeat("v", 15) + "=1"}, ""},
		{"value 257", []string{"foo=" + strings.Repeat("v", 257)}, ""},
		{"space before equals", []string{"foo =1"}, ""},
		{"uppercase key", []string{"FOO=1"}, ""},
		{"dot in key", []string{"foo.bar=1"}, ""},
		{"empty tenant", []string{"@foo=1,bar=2"}, ""},
		{"empty system", []string{"foo@=1,bar=2"}, ""},
		{"double at", []string{"foo@@bar=1,bar=2"}, ""},
		{"two ats", []string{"foo@bar@baz=1,bar=2"}, ""},
		{"system starts with digit", []string{"foo@1bar=1"}, ""},
		{"equals in value", []string{"foo=bar=baz"}, ""},
		{"empty value", []string{"foo=,bar=3"}, ""},
		{"no equals", []string{"foo,bar=3"}, ""},
		{"tab inside value", []string{"foo=a\tb"}, ""},
		{"non-ASCII value", []string{"foo=caf\xc3\xa9"}, ""},
		{"control char value", []string{"foo=a\x01"}, ""},
		{"bad member in later header", []string{"foo=1", "BAR=2"}, ""},

		// Duplicates: the header is invalid and discarded, as the
		// harness expects at STRICT_LEVEL 2.
		{"duplicate same value", []string{"foo=1,foo=1"}, ""},
		{"duplicate different value", []string{"foo=1,foo=2"}, ""},
		{"duplicate across headers", []string{"foo=1", "bar=2,foo=2"}, ""},

		// Over 32 distinct members: discarded, as the harness expects.
		{"33 members", list33, ""},
		{"33 members, one a duplicate", append(list32, "bar01=x"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := propagate.ParseTraceState(tt.in)
			if got := ts.Format(); got != tt.want {
				t.Errorf("ParseTraceState(%q).Format() =\n  %q\nwant\n  %q", tt.in, got, tt.want)
			}
			if ts.Len() > propagate.MaxTraceStateMembers {
				t.Errorf("Len() = %d", ts.Len())
			}
			// Re-parsing the output is a fixed point.
			if again := propagate.ParseTraceState([]string{ts.Format()}).Format(); again != ts.Format() {
				t.Errorf("re-parse = %q, want %q", again, ts.Format())
			}
		})
	}
}

func TestTraceStateInsertTruncatesLongFirst(t *testing.T) {
	long := func(i int) string { return fmt.Sprintf("long%02d=%s", i, strings.Repeat("x", 130)) }
	short := func(i int) string { return fmt.Sprintf("s%02d=1", i) }

	// 29 short + 3 long (32 members), and one inserted: the right-most long
	// one goes, every short one stays.
	var in, want []string
	want = append(want, "devstack=x")
	for i := range 29 {
		in = append(in, short(i))
		want = append(want, short(i))
		if i == 5 || i == 10 || i == 20 {
			in = append(in, long(i))
			if i != 20 {
				want = append(want, long(i))
			}
		}
	}
	ts := propagate.ParseTraceState(in)
	if ts.Len() != 32 {
		t.Fatalf("setup: Len() = %d", ts.Len())
	}
	got, err := ts.Insert("devstack", "x")
	if err != nil || got.Format() != strings.Join(want, ",") {
		t.Errorf("got (%v)\n  %s\nwant\n  %s", err, got.Format(), strings.Join(want, ","))
	}

	// 32 short, and one inserted: the right-most short one goes.
	in, want = nil, []string{"devstack=x"}
	for i := range 32 {
		in = append(in, short(i))
		if i < 31 {
			want = append(want, short(i))
		}
	}
	got, err = propagate.ParseTraceState(in).Insert("devstack", "x")
	if err != nil || got.Format() != strings.Join(want, ",") {
		t.Errorf("got (%v)\n  %s\nwant\n  %s", err, got.Format(), strings.Join(want, ","))
	}
}

func TestTraceStateManyMembers(t *testing.T) {
	// Thousands of members over 32 keys, each repeated: duplicated keys,
	// so none (discarded at the first repeat, without reading the rest).
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "k%d=%d,", i%32, i)
	}
	if ts := propagate.ParseTraceState([]string{b.String()}); ts.Len() != 0 {
		t.Fatalf("repeated keys: Len() = %d, want 0 (discarded)", ts.Len())
	}
	// 32 distinct keys in a long header: all kept.
	b.Reset()
	for i := range 32 {
		fmt.Fprintf(&b, "k%d=%d,", i, i)
	}
	ts := propagate.ParseTraceState([]string{b.String()})
	if ts.Len() != 32 {
		t.Fatalf("Len() = %d, want 32", ts.Len())
	}
	if v, _ := ts.Get("k0"); v != "0" {
		t.Errorf("k0 = %q, want 0", v)
	}
	// Over 5000 keys: more than 32, so none.
	b.Reset()
	for i := range 20000 {
		fmt.Fprintf(&b, "k%d=%d,", i%5000, i)
	}
	if ts := propagate.ParseTraceState([]string{b.String()}); ts.Len() != 0 {
		t.Fatalf("5000 keys: Len() = %d, want 0 (discarded)", ts.Len())
	}
}

func TestTraceStateMutation(t *testing.T) {
	ts := propagate.ParseTraceState([]string{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"})

	// Spec example: congo updates its entry, which moves to the left.
	up, err := ts.Insert("congo", "ucfJifl5GOE")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := up.Format(), "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7"; got != want {
		t.Errorf("Insert existing = %q, want %q", got, want)
	}
	if ts.Format() != "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE" {
		t.Errorf("Insert mutated the receiver: %q", ts.Format())
	}
	add, err := ts.Insert("devstack", "x")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := add.Format(), "devstack=x,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"; got != want {
		t.Errorf("Insert new = %q, want %q", got, want)
	}
	if v, ok := add.Get("devstack"); !ok || v != "x" {
		t.Errorf("Get = %q, %v", v, ok)
	}
	if got := add.Delete("rojo").Format(); got != "devstack=x,congo=t61rcWkgMzE" {
		t.Errorf("Delete = %q", got)
	}
	if got := add.Delete("absent").Format(); got != add.Format() {
		t.Errorf("Delete absent = %q", got)
	}
	var keys []string
	for k := range add.All() {
		keys = append(keys, k)
	}
	if strings.Join(keys, ",") != "devstack,rojo,congo" {
		t.Errorf("All keys = %v", keys)
	}

	if _, err := ts.Insert("Bad", "x"); !errors.Is(err, propagate.ErrInvalidTraceStateKey) {
		t.Errorf("Insert bad key err = %v", err)
	}
	if _, err := ts.Insert("ok", "a,b"); !errors.Is(err, propagate.ErrInvalidTraceStateValue) {
		t.Errorf("Insert bad value err = %v", err)
	}

	// Inserting into a full list keeps the new entry and drops the right-most.
	var full []string
	for i := range 32 {
		full = append(full, fmt.Sprintf("k%02d=v", i))
	}
	ins, err := propagate.ParseTraceState(full).Insert("new", "1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "new=1," + strings.Join(full[:31], ","); ins.Format() != want {
		t.Errorf("Insert into full = %q, want %q", ins.Format(), want)
	}
}

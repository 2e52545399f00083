package trace

import "testing"

func TestParseStatusRange(t *testing.T) {
	for in, want := range map[string]StatusRange{
		"404": {404, 404}, "4xx": {400, 499}, "5XX": {500, 599}, "500-504": {500, 504}, " 502 ": {502, 502},
	} {
		got, err := ParseStatusRange(in)
		if err != nil || got != want {
			t.Errorf("ParseStatusRange(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, err := ParseStatusRange(got.String()); err != nil || back != got {
			t.Errorf("%v does not read back from %q", got, got.String())
		}
	}
	for _, bad := range []string{"", "abc", "6xx", "0xx", "99", "600", "504-500", "5x", "500-", "-1"} {
		if _, err := ParseStatusRange(bad); err == nil {
			t.Errorf("ParseStatusRange(%q): no error", bad)
		}
	}
	r := StatusRange{500, 504}
	if !r.Contains(500) || !r.Contains(504) || r.Contains(505) || r.Contains(499) || !(StatusRange{}).Contains(200) {
		t.Error("Contains")
	}
}

package trace

import (
	"fmt"
	"strconv"
	"strings"
)

// StatusRange is a range of HTTP statuses, both ends included. The zero
// value is no range: it matches every hop.
type StatusRange struct{ Min, Max int }

// ParseStatusRange reads a status ("404"), a class ("4xx", any case) or
// a range ("500-504"), all within 100 to 599.
func ParseStatusRange(s string) (StatusRange, error) {
	const want = "want an HTTP status (404), a class (4xx, 5xx) or a range (500-504), within 100 to 599"
	t := strings.ToLower(strings.TrimSpace(s))
	var r StatusRange
	switch lo, hi, isRange := strings.Cut(t, "-"); {
	case len(t) == 3 && t[1:] == "xx" && '1' <= t[0] && t[0] <= '5':
		c := int(t[0]-'0') * 100
		r = StatusRange{c, c + 99}
	case isRange:
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil {
			return r, fmt.Errorf("status %q: %s", s, want)
		}
		r = StatusRange{a, b}
	default:
		n, err := strconv.Atoi(t)
		if err != nil {
			return r, fmt.Errorf("status %q: %s", s, want)
		}
		r = StatusRange{n, n}
	}
	if r.Min < 100 || r.Max > 599 {
		return StatusRange{}, fmt.Errorf("status %q: %s", s, want)
	}
	if r.Min > r.Max {
		return StatusRange{}, fmt.Errorf("status %q: the range ends before it starts; write it low-high, e.g. 500-504", s)
	}
	return r, nil
}

// IsZero reports whether r is no range.
func (r StatusRange) IsZero() bool { return r == StatusRange{} }

// Contains reports whether status is in r (always, for the zero range).
func (r StatusRange) Contains(status int) bool {
	return r.IsZero() || r.Min <= status && status <= r.Max
}

// String writes r as ParseStatusRange reads it: "" for the zero range.
func (r StatusRange) String() string {
	switch {
	case r.IsZero():
		return ""
	case r.Min == r.Max:
		return strconv.Itoa(r.Min)
	case r.Min%100 == 0 && r.Max == r.Min+99:
		return strconv.Itoa(r.Min/100) + "xx"
	}
	return strconv.Itoa(r.Min) + "-" + strconv.Itoa(r.Max)
}

package propagate

import (
	"fmt"
	"iter"
	"strings"
)

// MaxBaggageBytes is the longest baggage-string propagated, commas
// included. The W3C Baggage spec's limits: a platform "MUST propagate all
// list-members [...] if the resulting baggage-string would be 8192 bytes
// or less", and may drop members only beyond that. (Its other limit, at
// least 64 members, is a floor that the byte limit already keeps: no
// member count is ever cut.)
const MaxBaggageBytes = 8192

// BaggageMember is one list-member of a baggage header.
type BaggageMember struct {
	// Key is an RFC 7230 token.
	Key string
	// Value is the value exactly as sent: percent-encoded UTF-8 that this
	// package never decodes, so it is forwarded byte for byte.
	Value string
	// Properties holds the member's properties, opaque to the spec, as
	// "k1;k2=v2" (';'-separated, no leading ';', whitespace removed), or "".
	Properties string
}

// len is the member's length once formatted.
func (m BaggageMember) len() int {
	n := len(m.Key) + 1 + len(m.Value)
	if m.Properties != "" {
		n += 1 + len(m.Properties)
	}
	return n
}

func (m BaggageMember) appendTo(b *strings.Builder) {
	b.WriteString(m.Key)
	b.WriteByte('=')
	b.WriteString(m.Value)
	if m.Properties != "" {
		b.WriteByte(';')
		b.WriteString(m.Properties)
	}
}

// Baggage is a parsed baggage header: an ordered list of members within
// MaxBaggageBytes. Keys may repeat; the spec asks for
// duplicates to keep their order. The zero value is empty; a Baggage is
// immutable.
type Baggage struct {
	members []BaggageMember
	size    int // formatted length, commas included
}

// ParseBaggage parses the values of one or more baggage header fields,
// combined in order as if joined with ','. Whitespace around keys, '=',
// values and properties is removed. A malformed member is dropped on its
// own (the spec allows removing an entry that is not in its format) and the
// rest is kept. Every member is kept while the whole fits in
// MaxBaggageBytes. Beyond that, members are dropped whole, never cut, and
// never the sentry-* ones while any other can go: Sentry freezes those at
// the head of the trace, and every SDK downstream reads its sampling
// decision from them. The others are kept in order while they fit.
func ParseBaggage(values []string) Baggage {
	var bg Baggage
	it := listIter{values: values}
	for {
		raw, ok := it.next()
		if !ok {
			break
		}
		m, ok := parseBaggageMember(raw)
		if !ok {
			continue
		}
		if len(bg.members) > 0 {
			bg.size++ // comma
		}
		bg.members = append(bg.members, m)
		bg.size += m.len()
	}
	if bg.size > MaxBaggageBytes {
		bg = fitBaggage(bg.members)
	}
	return bg
}

// fitBaggage keeps, in order, what of ms fits in MaxBaggageBytes: the
// sentry-* members first, then the others, each while it fits.
func fitBaggage(ms []BaggageMember) Baggage {
	keep := make([]bool, len(ms))
	used := 0 // each member counted with a comma: n members fit in Max+1
	for _, sentry := range []bool{true, false} {
		for i, m := range ms {
			if strings.HasPrefix(m.Key, sentryBaggagePrefix) == sentry && used+m.len()+1 <= MaxBaggageBytes+1 {
				keep[i] = true
				used += m.len() + 1
			}
		}
	}
	var bg Baggage
	for i, m := range ms {
		if keep[i] {
			bg.add(m)
		}
	}
	return bg
}

// add appends m if it fits within MaxBaggageBytes and reports whether it
// did.
func (bg *Baggage) add(m BaggageMember) bool {
	n := m.len()
	if len(bg.members) > 0 {
		n++ // comma
	}
	if bg.size+n > MaxBaggageBytes {
		return false
	}
	bg.members = append(bg.members, m)
	bg.size += n
	return true
}

// Len returns the number of members.
func (bg Baggage) Len() int { return len(bg.members) }

// Get returns the first member with key.
func (bg Baggage) Get(key string) (BaggageMember, bool) {
	for _, m := range bg.members {
		if m.Key == key {
			return m, true
		}
	}
	return BaggageMember{}, false
}

// All iterates over the members in order.
func (bg Baggage) All() iter.Seq[BaggageMember] {
	return func(yield func(BaggageMember) bool) {
		for _, m := range bg.members {
			if !yield(m) {
				return
			}
		}
	}
}

// Append returns a copy of bg with m added at the end. It fails with an
// error wrapping ErrInvalidBaggageMember if m is outside the grammar (the
// value must already be percent-encoded), or ErrBaggageLimit if it does not
// fit.
func (bg Baggage) Append(m BaggageMember) (Baggage, error) {
	raw := m.Key + "=" + m.Value
	if m.Properties != "" {
		raw += ";" + m.Properties
	}
	norm, ok := parseBaggageMember(raw)
	if !ok || norm != m {
		return bg, fmt.Errorf("appending baggage: %w %q", ErrInvalidBaggageMember, raw)
	}
	out := Baggage{members: make([]BaggageMember, len(bg.members), len(bg.members)+1), size: bg.size}
	copy(out.members, bg.members)
	if !out.add(m) {
		return bg, fmt.Errorf("appending baggage member %q: %w (%d bytes)",
			m.Key, ErrBaggageLimit, MaxBaggageBytes)
	}
	return out, nil
}

// Format returns the header value, members joined by ',' without optional
// whitespace. An empty Baggage formats as "".
func (bg Baggage) Format() string {
	if len(bg.members) == 0 {
		return ""
	}
	var b strings.Builder
	b.Grow(bg.size)
	for i, m := range bg.members {
		if i > 0 {
			b.WriteByte(',')
		}
		m.appendTo(&b)
	}
	return b.String()
}

// String is Format.
func (bg Baggage) String() string { return bg.Format() }

// parseBaggageMember parses one list-member (already split on ',').
func parseBaggageMember(s string) (BaggageMember, bool) {
	first, props, hasProps := strings.Cut(s, ";")
	key, value, ok := strings.Cut(first, "=")
	key, value = trimOWS(key), trimOWS(value)
	if !ok || !validToken(key) || !validBaggageValue(value) {
		return BaggageMember{}, false
	}
	m := BaggageMember{Key: key, Value: value}
	if !hasProps {
		return m, true
	}
	// Properties: keep the string as is when it is already canonical, so
	// the common case does not allocate.
	canonical := true
	count := 0
	for p := range strings.SplitSeq(props, ";") {
		t := trimOWS(p)
		if t == "" {
			canonical = false // empty property: tolerated, dropped
			continue
		}
		pk, pv, hasV := strings.Cut(t, "=")
		tk, tv := trimOWS(pk), trimOWS(pv)
		if !validToken(tk) || (hasV && !validBaggageValue(tv)) {
			return BaggageMember{}, false
		}
		if t != p || tk != pk || tv != pv {
			canonical = false
		}
		count++
	}
	switch {
	case count == 0:
	case canonical:
		m.Properties = props
	default:
		var b strings.Builder
		b.Grow(len(props))
		for p := range strings.SplitSeq(props, ";") {
			t := trimOWS(p)
			if t == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(';')
			}
			pk, pv, hasV := strings.Cut(t, "=")
			b.WriteString(trimOWS(pk))
			if hasV {
				b.WriteByte('=')
				b.WriteString(trimOWS(pv))
			}
		}
		m.Properties = b.String()
	}
	return m, true
}

// normalizeBaggage returns the baggage to propagate for the given header
// values: the allocation-free fast path of ParseBaggage(values).Format().
func normalizeBaggage(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		if canonicalBaggage(values[0]) {
			return values[0]
		}
	}
	return ParseBaggage(values).Format()
}

// canonicalBaggage reports whether s is what ParseBaggage(s).Format() would
// return: valid members without whitespace, empty members or empty
// properties, within MaxBaggageBytes. It is one pass over the bytes, following
// the grammar: key "=" value *(";" pkey ["=" pvalue]) *("," member).
func canonicalBaggage(s string) bool {
	if len(s) > MaxBaggageBytes {
		return false
	}
	if s == "" {
		return true
	}
	i := 0
	for {
		start := i
		for i < len(s) && isTChar(s[i]) {
			i++
		}
		if i == start || i == len(s) || s[i] != '=' {
			return false
		}
		i++
		for i < len(s) && isBaggageOctet(s[i]) {
			i++
		}
		for i < len(s) && s[i] == ';' {
			i++
			start = i
			for i < len(s) && isTChar(s[i]) {
				i++
			}
			if i == start {
				return false
			}
			if i < len(s) && s[i] == '=' {
				i++
				for i < len(s) && isBaggageOctet(s[i]) {
					i++
				}
			}
		}
		if i == len(s) {
			return true
		}
		if s[i] != ',' {
			return false
		}
		i++
	}
}

// hasSentryBaggage reports whether a formatted baggage string holds any
// sentry-* member.
func hasSentryBaggage(s string) bool {
	for raw := range strings.SplitSeq(s, ",") {
		if strings.HasPrefix(trimOWS(raw), sentryBaggagePrefix) {
			return true
		}
	}
	return false
}

// validToken reports whether s is a non-empty RFC 7230 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTChar(s[i]) {
			return false
		}
	}
	return true
}

func isTChar(c byte) bool { return byteClass[c]&classTChar != 0 }

// isBaggageOctet reports whether c is a baggage-octet: printable US-ASCII
// except SP, DQUOTE, ',', ';' and '\'.
func isBaggageOctet(c byte) bool { return byteClass[c]&classOctet != 0 }

const (
	classTChar = 1 << iota // RFC 7230 tchar
	classOctet             // W3C baggage-octet
)

// byteClass classifies bytes for the baggage grammar. It is computed once
// and never written after.
var byteClass = func() (t [256]uint8) {
	for c := 0x21; c <= 0x7e; c++ {
		switch c {
		case '"', ',', ';', '\\':
		default:
			t[c] |= classOctet
		}
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0 {
			t[c] |= classTChar
		}
	}
	return t
}()

// validBaggageValue reports whether every byte of s is a baggage-octet.
// Empty is valid.
func validBaggageValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isBaggageOctet(s[i]) {
			return false
		}
	}
	return true
}

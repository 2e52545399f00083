package propagate

import (
	"fmt"
	"iter"
	"strings"
)

// Tracestate limits from W3C Trace Context.
const (
	// MaxTraceStateMembers is the most list-members a tracestate may hold.
	MaxTraceStateMembers = 32
	// maxTraceStateKey and maxTraceStateValue bound keys and values.
	maxTraceStateKey   = 256
	maxTraceStateValue = 256
	// longTraceStateMember: when truncating, members longer than this are
	// removed before any other.
	longTraceStateMember = 128
)

// TraceStateMember is one key=value list-member of a tracestate.
type TraceStateMember struct {
	Key   string
	Value string
}

// TraceState is a parsed tracestate: an ordered list of at most
// MaxTraceStateMembers members with unique keys. The zero value is empty.
// A TraceState is immutable: Insert and Delete return a new one.
type TraceState struct {
	members []TraceStateMember
}

// ParseTraceState parses the values of one or more tracestate header fields,
// combined in order as RFC 7230 section 3.2.2 prescribes (as if joined with
// ','). The rules, chosen to match the W3C trace-context test harness where
// the spec leaves a choice:
//
//   - SP/HTAB around list-members is ignored, and empty members are skipped
//     (the spec allows them).
//   - If any non-empty member is malformed (bad key, bad value, no '='), the
//     whole tracestate is discarded and the result is empty: the spec lets a
//     vendor drop an invalid header, and the harness expects exactly that.
//   - A duplicated key makes the whole tracestate invalid, and it is
//     discarded: the spec forbids duplicates, and the harness at
//     STRICT_LEVEL=2 expects exactly that.
//   - More than MaxTraceStateMembers distinct members discard the whole
//     tracestate: the spec's grammar allows at most 32, and the harness
//     expects a 33rd to discard the header. (Truncation, by whole entries,
//     applies only where a member is added: see Insert.)
//
// Keys follow the Level 2 grammar where the harness has no case against
// it, and Level 1 where it does: a simple key [a-z0-9][a-z0-9_\-*/]{0,255}
// (Level 2 lets it start with a digit), or tenant@system where tenant is
// [a-z0-9][a-z0-9_\-*/]{0,240} and system is [a-z][a-z0-9_\-*/]{0,13}.
// (Level 2 also admits any '@' in a key; the harness still rejects keys
// such as "foo@bar@baz" and "foo@", so they are refused.)
// Values are 1-256 characters in 0x20-0x7E except ',' and '=', not ending
// in a space; leading spaces are part of the value.
func ParseTraceState(values []string) TraceState {
	var (
		ms []TraceStateMember
		it = listIter{values: values}
	)
	for {
		m, ok := it.next()
		if !ok {
			break
		}
		key, value, ok := strings.Cut(m, "=")
		if !ok || !validTraceStateKey(key) || !validTraceStateValue(value) {
			return TraceState{}
		}
		if indexTraceState(ms, key) >= 0 {
			return TraceState{} // a duplicated key: invalid
		}
		if len(ms) == MaxTraceStateMembers {
			// A 33rd distinct key: the header is discarded, so the rest
			// need not be read (and a hostile one stays linear).
			return TraceState{}
		}
		ms = append(ms, TraceStateMember{Key: key, Value: value})
	}
	return TraceState{members: ms}
}

// truncateTraceState drops whole members until at most limit remain:
// members longer than 128 characters first, right to left, then the
// right-most members. It compacts ms in place and returns its prefix.
func truncateTraceState(ms []TraceStateMember, limit int) []TraceStateMember {
	excess := len(ms) - limit
	if excess <= 0 {
		return ms
	}
	drop := make([]bool, len(ms))
	for i := len(ms) - 1; i >= 0 && excess > 0; i-- {
		if len(ms[i].Key)+1+len(ms[i].Value) > longTraceStateMember {
			drop[i] = true
			excess--
		}
	}
	out := ms[:0]
	for i, m := range ms {
		if !drop[i] {
			out = append(out, m)
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	clear(ms[len(out):]) // let dropped strings be collected
	return out
}

func indexTraceState(ms []TraceStateMember, key string) int {
	for i := range ms {
		if ms[i].Key == key {
			return i
		}
	}
	return -1
}

// Len returns the number of list-members.
func (ts TraceState) Len() int { return len(ts.members) }

// Get returns the value for key.
func (ts TraceState) Get(key string) (string, bool) {
	if i := indexTraceState(ts.members, key); i >= 0 {
		return ts.members[i].Value, true
	}
	return "", false
}

// All iterates over the members from left (most recent) to right.
func (ts TraceState) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, m := range ts.members {
			if !yield(m.Key, m.Value) {
				return
			}
		}
	}
}

// Insert returns a copy of ts with key=value at the front (left), which is
// where the spec puts a vendor's updated or new entry. An existing entry for
// key is removed; if the list is then over MaxTraceStateMembers, the
// right-most members are dropped (long ones first). It returns an error
// wrapping ErrInvalidTraceStateKey or ErrInvalidTraceStateValue for input
// outside the grammar, and ts unchanged.
func (ts TraceState) Insert(key, value string) (TraceState, error) {
	if !validTraceStateKey(key) {
		return ts, fmt.Errorf("setting tracestate entry: %w %q", ErrInvalidTraceStateKey, key)
	}
	if !validTraceStateValue(value) {
		return ts, fmt.Errorf("setting tracestate entry %q: %w %q", key, ErrInvalidTraceStateValue, value)
	}
	ms := make([]TraceStateMember, 0, len(ts.members)+1)
	ms = append(ms, TraceStateMember{Key: key, Value: value})
	for _, m := range ts.members {
		if m.Key != key {
			ms = append(ms, m)
		}
	}
	if len(ms) > MaxTraceStateMembers {
		// Never drop the entry just inserted.
		rest := truncateTraceState(ms[1:], MaxTraceStateMembers-1)
		ms = ms[:1+len(rest)]
	}
	return TraceState{members: ms}, nil
}

// Delete returns a copy of ts without key. The spec asks vendors to delete
// only their own keys.
func (ts TraceState) Delete(key string) TraceState {
	i := indexTraceState(ts.members, key)
	if i < 0 {
		return ts
	}
	ms := make([]TraceStateMember, 0, len(ts.members)-1)
	ms = append(ms, ts.members[:i]...)
	ms = append(ms, ts.members[i+1:]...)
	return TraceState{members: ms}
}

// Format returns the header value: members joined by ',' without optional
// whitespace. An empty TraceState formats as "" (do not send the header).
func (ts TraceState) Format() string {
	if len(ts.members) == 0 {
		return ""
	}
	n := len(ts.members) - 1
	for _, m := range ts.members {
		n += len(m.Key) + 1 + len(m.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for i, m := range ts.members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.Key)
		b.WriteByte('=')
		b.WriteString(m.Value)
	}
	return b.String()
}

// String is Format.
func (ts TraceState) String() string { return ts.Format() }

// normalizeTraceState returns the tracestate to propagate for the given
// header values. It is the allocation-free fast path of
// ParseTraceState(values).Format(): a single value that is already in
// canonical form is returned as is.
func normalizeTraceState(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		if canonicalTraceState(values[0]) {
			return values[0]
		}
	}
	return ParseTraceState(values).Format()
}

// canonicalTraceState reports whether s is what ParseTraceState(s).Format()
// would return: valid members, no whitespace or empty members, no duplicate
// keys, at most MaxTraceStateMembers members. It is one pass over the bytes
// and does not allocate.
func canonicalTraceState(s string) bool {
	if s == "" {
		return true
	}
	var keys [MaxTraceStateMembers]string
	n, i := 0, 0
	for {
		if n == MaxTraceStateMembers {
			return false
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ',' {
			i++
		}
		key := s[start:i]
		if i == len(s) || s[i] != '=' || !validTraceStateKey(key) {
			return false
		}
		i++
		start = i
		for i < len(s) && s[i] != ',' {
			i++
		}
		// A valid key starts with [a-z0-9] and a valid value holds no HTAB
		// and does not end in a space, so a valid member has no OWS to trim.
		if !validTraceStateValue(s[start:i]) {
			return false
		}
		for _, k := range keys[:n] {
			if k == key {
				return false
			}
		}
		keys[n] = key
		n++
		if i == len(s) {
			return true
		}
		i++ // ','
	}
}

func validTraceStateKey(k string) bool {
	if len(k) == 0 || len(k) > maxTraceStateKey {
		return false
	}
	tenant, system, multi := strings.Cut(k, "@")
	if !multi {
		return (isLCAlpha(k[0]) || isDigit(k[0])) && allKeyChars(k[1:])
	}
	return len(tenant) >= 1 && len(tenant) <= 241 &&
		(isLCAlpha(tenant[0]) || isDigit(tenant[0])) && allKeyChars(tenant[1:]) &&
		len(system) >= 1 && len(system) <= 14 &&
		isLCAlpha(system[0]) && allKeyChars(system[1:])
}

func allKeyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '*' && c != '/' {
			return false
		}
	}
	return true
}

func validTraceStateValue(v string) bool {
	if len(v) == 0 || len(v) > maxTraceStateValue || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }

// listIter walks the comma-separated list-members of one or more header
// values without joining them, yielding each member with surrounding OWS
// trimmed and skipping empty ones.
type listIter struct {
	values []string
	rest   string
	inVal  bool
}

func (it *listIter) next() (string, bool) {
	for {
		if !it.inVal {
			if len(it.values) == 0 {
				return "", false
			}
			it.rest, it.values, it.inVal = it.values[0], it.values[1:], true
		}
		var m string
		var more bool
		m, it.rest, more = strings.Cut(it.rest, ",")
		if !more {
			it.inVal = false
		}
		if m = trimOWS(m); m != "" {
			return m, true
		}
	}
}

package propagate

import "strings"

// Headers is what Extract reads: the values of a header by its canonical
// name. http.Header is one; Carrier is another, for a proxy that parses
// request heads itself.
type Headers interface {
	Values(key string) []string
}

// The trace headers, numbered for Carrier and Replaces.
const (
	keyTraceParent = iota
	keyTraceState
	keyBaggage
	keySentryTrace
	keyB3
	keyB3TraceID
	keyB3SpanID
	keyB3ParentSpanID
	keyB3Sampled
	keyB3Flags
	keyRequestID
	keyCount
)

// keyNames are the trace headers' canonical names, by key.
var keyNames = [keyCount]string{
	keyTraceParent:    headerTraceParent,
	keyTraceState:     headerTraceState,
	keyBaggage:        headerBaggage,
	keySentryTrace:    headerSentryTrace,
	keyB3:             headerB3,
	keyB3TraceID:      headerB3TraceID,
	keyB3SpanID:       headerB3SpanID,
	keyB3ParentSpanID: headerB3ParentSpanID,
	keyB3Sampled:      headerB3Sampled,
	keyB3Flags:        headerB3Flags,
	keyRequestID:      headerRequestID,
}

// keyOf returns the key of a trace header name in any case, or -1. It is
// called for every header of every request, so it compares a name only
// with the trace headers of its length.
func keyOf(name string) int {
	is := func(k int) bool { return strings.EqualFold(name, keyNames[k]) }
	switch len(name) {
	case 2:
		if is(keyB3) {
			return keyB3
		}
	case 7:
		if is(keyBaggage) {
			return keyBaggage
		}
	case 10:
		for _, k := range [...]int{keyTraceState, keyB3Flags} {
			if is(k) {
				return k
			}
		}
	case 11:
		for _, k := range [...]int{keyTraceParent, keyB3SpanID} {
			if is(k) {
				return k
			}
		}
	case 12:
		for _, k := range [...]int{keySentryTrace, keyB3TraceID, keyB3Sampled, keyRequestID} {
			if is(k) {
				return k
			}
		}
	case 17:
		if is(keyB3ParentSpanID) {
			return keyB3ParentSpanID
		}
	}
	return -1
}

// Carrier gathers the trace headers of a request, as its header lines are
// read, for Extract: the Headers of a hand-parsed head, without a map. Its
// values alias the strings added. Reuse one with Reset; a request with one
// line per trace header costs no allocation.
type Carrier struct {
	vals [keyCount][]string
	one  [keyCount]string // backing for the first value of each header
}

// Add records the header line name: value when name (any case) is a trace
// header, and reports whether it was.
func (c *Carrier) Add(name, value string) bool {
	k := keyOf(name)
	if k < 0 {
		return false
	}
	if len(c.vals[k]) == 0 {
		c.one[k] = value
		c.vals[k] = c.one[k : k+1 : k+1]
	} else {
		c.vals[k] = append(c.vals[k], value) // a repeated header: copied out
	}
	return true
}

// Values returns the values of the trace header key, in the order added.
// Extract asks by canonical name, which is matched exactly, without
// folding case.
func (c *Carrier) Values(key string) []string {
	k := -1
	switch key {
	case headerTraceParent:
		k = keyTraceParent
	case headerTraceState:
		k = keyTraceState
	case headerBaggage:
		k = keyBaggage
	case headerSentryTrace:
		k = keySentryTrace
	case headerB3:
		k = keyB3
	case headerB3TraceID:
		k = keyB3TraceID
	case headerB3SpanID:
		k = keyB3SpanID
	case headerB3ParentSpanID:
		k = keyB3ParentSpanID
	case headerB3Sampled:
		k = keyB3Sampled
	case headerB3Flags:
		k = keyB3Flags
	case headerRequestID:
		k = keyRequestID
	default:
		k = keyOf(key)
	}
	if k < 0 {
		return nil
	}
	return c.vals[k]
}

// Reset empties c for the next request.
func (c *Carrier) Reset() { clear(c.vals[:]) }

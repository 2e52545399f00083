package propagate

import (
	"net/http"

	"github.com/devstack/devstack/trace"
)

// B3 is a parsed Zipkin B3 context, from the single b3 header or the
// X-B3-* headers.
type B3 struct {
	// TraceID is the trace id; a 64-bit (16 hex) id is left-padded with
	// zeros to 128 bits, so Format always writes 32 hex characters.
	TraceID trace.TraceID
	// SpanID is the caller's span id.
	SpanID trace.SpanID
	// ParentSpanID is the caller's parent span id, zero when absent.
	ParentSpanID trace.SpanID
	// Sampling is the decision; SamplingDeferred when absent.
	Sampling trace.Sampling
}

// HasIDs reports whether b carries a trace: a header holding only a
// sampling decision (b3: 0) parses successfully without ids.
func (b B3) HasIDs() bool { return b.TraceID.IsValid() && b.SpanID.IsValid() }

// ParseB3 parses a single b3 header value:
//
//	{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]
//
// or a sampling state on its own. TraceId is 16 or 32 lowercase hex,
// SpanId and ParentSpanId 16; SamplingState is 0 (deny), 1 (accept) or d
// (debug). Surrounding SP/HTAB is ignored; all-zero ids are rejected.
func ParseB3(s string) (B3, bool) {
	s = trimOWS(s)
	var b B3
	if len(s) == 1 {
		var ok bool
		b.Sampling, ok = parseB3SamplingChar(s[0])
		return b, ok
	}
	// Trace id: 16 or 32 hex, then '-'.
	tlen := 32
	if len(s) > 16 && s[16] == '-' {
		tlen = 16
	}
	if len(s) < tlen+1+16 || s[tlen] != '-' || !parseB3TraceID(&b.TraceID, s[:tlen]) {
		return B3{}, false
	}
	s = s[tlen+1:]
	if !decodeHex(b.SpanID[:], s[:16]) || !b.SpanID.IsValid() {
		return B3{}, false
	}
	s = s[16:]
	if s == "" {
		return b, true
	}
	// Sampling state: '-' and one character, then the end or '-'.
	if len(s) < 2 || s[0] != '-' || (len(s) > 2 && s[2] != '-') {
		return B3{}, false
	}
	var ok bool
	if b.Sampling, ok = parseB3SamplingChar(s[1]); !ok {
		return B3{}, false
	}
	if s = s[2:]; s == "" {
		return b, true
	}
	// Parent span id: '-' and 16 hex, then the end.
	if len(s) != 17 || !decodeHex(b.ParentSpanID[:], s[1:]) || !b.ParentSpanID.IsValid() {
		return B3{}, false
	}
	return b, true
}

func parseB3SamplingChar(c byte) (trace.Sampling, bool) {
	switch c {
	case '0':
		return trace.SamplingDeny, true
	case '1':
		return trace.SamplingAccept, true
	case 'd':
		return trace.SamplingDebug, true
	}
	return trace.SamplingDeferred, false
}

// parseB3TraceID decodes a 16 or 32 hex trace id into id, left-padding a
// 64-bit one, and rejects the all-zero id.
func parseB3TraceID(id *trace.TraceID, s string) bool {
	*id = trace.TraceID{}
	switch len(s) {
	case 32:
		if !decodeHex(id[:], s) {
			return false
		}
	case 16:
		if !decodeHex(id[8:], s) {
			return false
		}
	default:
		return false
	}
	return id.IsValid()
}

// Format returns the single b3 header value. Without ids it returns the
// sampling state alone ("0", "1", "d"), or "" when deferred (send nothing).
func (b B3) Format() string {
	var buf [32 + 1 + 16 + 2 + 17]byte
	return string(b.AppendFormat(buf[:0]))
}

// String is Format.
func (b B3) String() string { return b.Format() }

// AppendFormat appends the single b3 header value to dst. See Format.
func (b B3) AppendFormat(dst []byte) []byte {
	if !b.HasIDs() {
		if c := b3SamplingChar(b.Sampling); c != 0 {
			dst = append(dst, c)
		}
		return dst
	}
	dst = appendHex(dst, b.TraceID[:])
	dst = append(dst, '-')
	dst = appendHex(dst, b.SpanID[:])
	c := b3SamplingChar(b.Sampling)
	if c != 0 {
		dst = append(dst, '-', c)
	}
	if b.ParentSpanID.IsValid() {
		if c == 0 {
			// The parent is positional after the sampling state; a
			// deferred decision cannot be written before it, so the
			// parent is left out rather than emitting an invalid header.
			return dst
		}
		dst = append(dst, '-')
		dst = appendHex(dst, b.ParentSpanID[:])
	}
	return dst
}

func b3SamplingChar(s trace.Sampling) byte {
	switch s {
	case trace.SamplingDeny:
		return '0'
	case trace.SamplingAccept:
		return '1'
	case trace.SamplingDebug:
		return 'd'
	}
	return 0
}

// Canonical X-B3-* header keys, as net/http stores them.
const (
	headerB3TraceID      = "X-B3-Traceid"
	headerB3SpanID       = "X-B3-Spanid"
	headerB3ParentSpanID = "X-B3-Parentspanid"
	headerB3Sampled      = "X-B3-Sampled"
	headerB3Flags        = "X-B3-Flags"
)

// ParseB3Multi parses the X-B3-* headers of h; the first value of each wins. X-B3-TraceId and X-B3-SpanId
// must both be present and valid, or both absent with only a sampling
// decision present. X-B3-Sampled accepts 1/0 and, leniently, true/false;
// X-B3-Flags: 1 means debug. Any other sampled or flags value counts as no
// decision. An invalid X-B3-ParentSpanId rejects the context.
func ParseB3Multi(h Headers) (B3, bool) {
	var b B3
	switch first(h, headerB3Sampled) {
	case "1", "true":
		b.Sampling = trace.SamplingAccept
	case "0", "false":
		b.Sampling = trace.SamplingDeny
	}
	if first(h, headerB3Flags) == "1" {
		b.Sampling = trace.SamplingDebug
	}
	tid, sid := first(h, headerB3TraceID), first(h, headerB3SpanID)
	if tid == "" && sid == "" {
		return b, b.Sampling != trace.SamplingDeferred
	}
	if !parseB3TraceID(&b.TraceID, tid) {
		return B3{}, false
	}
	var ok bool
	if b.SpanID, ok = trace.ParseSpanID(sid); !ok {
		return B3{}, false
	}
	if pid := first(h, headerB3ParentSpanID); pid != "" {
		if b.ParentSpanID, ok = trace.ParseSpanID(pid); !ok {
			return B3{}, false
		}
	}
	return b, true
}

// SetMulti replaces the X-B3-* headers of h with b. Debug is written as
// X-B3-Flags: 1 without X-B3-Sampled, as the spec asks.
func (b B3) SetMulti(h http.Header) {
	deleteB3(h)
	if b.HasIDs() {
		h[headerB3TraceID] = []string{b.TraceID.String()}
		h[headerB3SpanID] = []string{b.SpanID.String()}
		if b.ParentSpanID.IsValid() {
			h[headerB3ParentSpanID] = []string{b.ParentSpanID.String()}
		}
	}
	switch b.Sampling {
	case trace.SamplingDeny:
		h[headerB3Sampled] = []string{"0"}
	case trace.SamplingAccept:
		h[headerB3Sampled] = []string{"1"}
	case trace.SamplingDebug:
		h[headerB3Flags] = []string{"1"}
	}
}

// deleteB3 removes every B3 header, single and multi.
func deleteB3(h http.Header) {
	delete(h, headerB3)
	delete(h, headerB3TraceID)
	delete(h, headerB3SpanID)
	delete(h, headerB3ParentSpanID)
	delete(h, headerB3Sampled)
	delete(h, headerB3Flags)
}

// first returns the first value of the canonical key in h, trimmed of OWS.
func first(h Headers, key string) string {
	if v := h.Values(key); len(v) > 0 {
		return trimOWS(v[0])
	}
	return ""
}

package propagate

import "github.com/devstack/devstack/trace"

// Trace flags defined by W3C Trace Context Level 2. Other bits are reserved:
// they are kept when parsing but cleared by Inject, as the spec requires.
const (
	// FlagSampled (bit 0) means the caller may have recorded trace data.
	FlagSampled byte = 0x01
	// FlagRandom (bit 1, Level 2) means the right-most 7 bytes of the trace
	// id were generated at random.
	FlagRandom byte = 0x02

	knownFlags = FlagSampled | FlagRandom
)

// traceParentLen is the length of a version 00 traceparent value:
// 2 (version) + 1 + 32 (trace-id) + 1 + 16 (parent-id) + 1 + 2 (flags).
const traceParentLen = 55

// TraceParent is a parsed W3C traceparent header value.
type TraceParent struct {
	// Version is the version the header was received with. Format always
	// writes 00, the highest version this package knows.
	Version byte
	// TraceID is the id of the whole trace. Never zero after a successful parse.
	TraceID trace.TraceID
	// ParentID is the caller's span id. Never zero after a successful parse.
	ParentID trace.SpanID
	// Flags is the trace-flags byte as received, unknown bits included.
	Flags byte
}

// ParseTraceParent parses a traceparent header value following W3C Trace
// Context Level 2:
//
//   - leading and trailing SP/HTAB are ignored;
//   - the value starts with a 2-lowercase-hex version and '-'; version ff is
//     invalid;
//   - version 00 must be exactly 55 characters:
//     00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>;
//   - a higher version is parsed with the 00 rules on its first 55
//     characters, which may be followed only by '-' and fields this package
//     ignores;
//   - hex must be lowercase, and an all-zero trace-id or parent-id is
//     invalid.
//
// It reports false for anything else; the caller should then start a new
// trace.
func ParseTraceParent(s string) (TraceParent, bool) {
	s = trimOWS(s)
	if len(s) < traceParentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return TraceParent{}, false
	}
	var tp TraceParent
	var b [1]byte
	if !decodeHex(b[:], s[0:2]) || b[0] == 0xff {
		return TraceParent{}, false
	}
	tp.Version = b[0]
	if len(s) > traceParentLen && (tp.Version == 0 || s[traceParentLen] != '-') {
		return TraceParent{}, false
	}
	if !decodeHex(tp.TraceID[:], s[3:35]) || !decodeHex(tp.ParentID[:], s[36:52]) || !decodeHex(b[:], s[53:55]) {
		return TraceParent{}, false
	}
	tp.Flags = b[0]
	if !tp.TraceID.IsValid() || !tp.ParentID.IsValid() {
		return TraceParent{}, false
	}
	return tp, true
}

// IsValid reports whether tp can be formatted: both ids non-zero and a
// version other than ff.
func (tp TraceParent) IsValid() bool {
	return tp.Version != 0xff && tp.TraceID.IsValid() && tp.ParentID.IsValid()
}

// Sampled reports whether the sampled flag is set.
func (tp TraceParent) Sampled() bool { return tp.Flags&FlagSampled != 0 }

// RandomTraceID reports whether the Level 2 random-trace-id flag is set.
func (tp TraceParent) RandomTraceID() bool { return tp.Flags&FlagRandom != 0 }

// WithSampled returns tp with the sampled flag set or cleared; other flags,
// including random-trace-id, are kept.
func (tp TraceParent) WithSampled(sampled bool) TraceParent {
	if sampled {
		tp.Flags |= FlagSampled
	} else {
		tp.Flags &^= FlagSampled
	}
	return tp
}

// Format returns the header value as version 00 (a higher received version
// is downgraded, as the spec requires). Flags are written as they are; Inject
// clears the reserved bits.
func (tp TraceParent) Format() string {
	var buf [traceParentLen]byte
	return string(tp.AppendFormat(buf[:0]))
}

// String is Format.
func (tp TraceParent) String() string { return tp.Format() }

// AppendFormat appends the version 00 header value to dst.
func (tp TraceParent) AppendFormat(dst []byte) []byte {
	dst = append(dst, '0', '0', '-')
	dst = appendHex(dst, tp.TraceID[:])
	dst = append(dst, '-')
	dst = appendHex(dst, tp.ParentID[:])
	dst = append(dst, '-')
	return appendHexByte(dst, tp.Flags)
}

package trace

import "math/rand/v2"

// TraceID identifies a whole distributed trace: 16 bytes, written as 32
// lowercase hex characters. The zero value is invalid.
type TraceID [16]byte

// SpanID identifies one operation (one proxy hop) within a trace: 8 bytes,
// written as 16 lowercase hex characters. The zero value is invalid.
type SpanID [8]byte

// IsValid reports whether id is not all zeros.
func (id TraceID) IsValid() bool { return id != TraceID{} }

// IsValid reports whether id is not all zeros.
func (id SpanID) IsValid() bool { return id != SpanID{} }

// String returns id as 32 lowercase hex characters.
func (id TraceID) String() string {
	var buf [32]byte
	return string(appendHex(buf[:0], id[:]))
}

// String returns id as 16 lowercase hex characters.
func (id SpanID) String() string {
	var buf [16]byte
	return string(appendHex(buf[:0], id[:]))
}

// AppendText appends the lowercase hex form of id to dst (encoding.TextAppender).
func (id TraceID) AppendText(dst []byte) ([]byte, error) { return appendHex(dst, id[:]), nil }

// AppendText appends the lowercase hex form of id to dst (encoding.TextAppender).
func (id SpanID) AppendText(dst []byte) ([]byte, error) { return appendHex(dst, id[:]), nil }

// MarshalText returns the lowercase hex form of id (encoding.TextMarshaler),
// so IDs read well in JSON exports.
func (id TraceID) MarshalText() ([]byte, error) { return id.AppendText(make([]byte, 0, 32)) }

// MarshalText returns the lowercase hex form of id (encoding.TextMarshaler).
func (id SpanID) MarshalText() ([]byte, error) { return id.AppendText(make([]byte, 0, 16)) }

// ParseTraceID parses exactly 32 lowercase hex characters. It reports false
// for any other input, including the all-zero id.
func ParseTraceID(s string) (TraceID, bool) {
	var id TraceID
	if len(s) != 32 || !decodeHex(id[:], s) || !id.IsValid() {
		return TraceID{}, false
	}
	return id, true
}

// ParseSpanID parses exactly 16 lowercase hex characters. It reports false
// for any other input, including the all-zero id.
func ParseSpanID(s string) (SpanID, bool) {
	var id SpanID
	if len(s) != 16 || !decodeHex(id[:], s) || !id.IsValid() {
		return SpanID{}, false
	}
	return id, true
}

// Source supplies random 64-bit values. *rand.ChaCha8, *rand.PCG and
// *rand.Rand from math/rand/v2 all satisfy it; tests pass a seeded one to get
// reproducible ids.
type Source interface {
	Uint64() uint64
}

// NewTraceID returns a random, valid trace id drawn from r, or from the
// runtime's generator when r is nil.
//
// The default generator is math/rand/v2's top-level Uint64: since Go 1.22 it
// is the runtime's per-thread ChaCha8 state, seeded from the OS, so it is
// safe for concurrent use without a lock or a sync.Pool, never fails, does
// not allocate and costs a few nanoseconds. Its output is unpredictable
// enough for ids (W3C Level 2 asks for random trace ids, not secrets), which
// is why the proxy sets the random-trace-id flag on traces it starts.
// crypto/rand would add a syscall (or vDSO call) per id on the hot path for
// no practical gain.
func NewTraceID(r Source) TraceID {
	var id TraceID
	for !id.IsValid() {
		putUint64(id[:8], next(r))
		putUint64(id[8:], next(r))
	}
	return id
}

// NewSpanID returns a random, valid span id drawn from r, or from the
// runtime's generator when r is nil. See NewTraceID.
func NewSpanID(r Source) SpanID {
	var id SpanID
	for !id.IsValid() {
		putUint64(id[:], next(r))
	}
	return id
}

func next(r Source) uint64 {
	if r == nil {
		return rand.Uint64()
	}
	return r.Uint64()
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	b[0] = byte(v >> 56)
	b[1] = byte(v >> 48)
	b[2] = byte(v >> 40)
	b[3] = byte(v >> 32)
	b[4] = byte(v >> 24)
	b[5] = byte(v >> 16)
	b[6] = byte(v >> 8)
	b[7] = byte(v)
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, src []byte) []byte {
	for _, b := range src {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0x0f])
	}
	return dst
}

func appendHexByte(dst []byte, b byte) []byte {
	return append(dst, hexDigits[b>>4], hexDigits[b&0x0f])
}

// unhexTable maps a lowercase hex digit to its value and every other byte
// to 0xff. Uppercase is invalid: every format in this package specifies
// lowercase hex. It is computed once and never written after.
var unhexTable = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := byte(0); i < 10; i++ {
		t['0'+i] = i
	}
	for i := byte(0); i < 6; i++ {
		t['a'+i] = 10 + i
	}
	return t
}()

// decodeHex decodes len(dst)*2 lowercase hex characters from s into dst.
// The caller checks len(s).
func decodeHex(dst []byte, s string) bool {
	if len(dst) == 0 {
		return true
	}
	_ = s[2*len(dst)-1]
	for i := range dst {
		hi, lo := unhexTable[s[2*i]], unhexTable[s[2*i+1]]
		if hi|lo > 0x0f {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

package propagate

import (
	"math/rand/v2"

	"github.com/devstack/devstack/trace"
)

// The byte helpers of the header codec. The span model has its own copies
// for TraceID and SpanID: a few lines each, so that neither package
// exports byte-level helpers for the other.

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

// isOWS reports whether c is optional whitespace (RFC 7230: SP or HTAB).
func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// trimOWS removes leading and trailing SP and HTAB.
func trimOWS(s string) string {
	for len(s) > 0 && isOWS(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isOWS(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// next draws a random 64-bit value from r, or from the runtime's
// generator when r is nil (see trace.NewTraceID).
func next(r trace.Source) uint64 {
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

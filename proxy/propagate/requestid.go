package propagate

import (
	"net/http"

	"github.com/devstack/devstack/trace"
)

const headerRequestID = "X-Request-Id" // canonical form of X-Request-ID

// RequestID returns the first X-Request-ID value of h exactly as received,
// or "" when there is none.
func RequestID(h Headers) string {
	if v := h.Values(headerRequestID); len(v) > 0 {
		return v[0]
	}
	return ""
}

// EnsureRequestID returns the X-Request-ID of h, unchanged, when present
// and non-empty. Otherwise it generates one with NewRequestID, sets it on h
// and returns it.
func EnsureRequestID(h http.Header) string {
	if id := RequestID(h); id != "" {
		return id
	}
	id := NewRequestID(nil)
	h[headerRequestID] = []string{id}
	return id
}

// NewRequestID returns a random version 4 UUID in its 36-character lowercase
// form, the shape most servers and log pipelines expect in X-Request-ID,
// drawn from r or from the runtime generator when r is nil.
func NewRequestID(r trace.Source) string {
	var buf [36]byte
	return string(appendRequestID(buf[:0], r))
}

// appendRequestID appends a new request id (see NewRequestID) to b.
func appendRequestID(b []byte, r trace.Source) []byte {
	var u [16]byte
	putUint64(u[:8], next(r))
	putUint64(u[8:], next(r))
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	b = appendHex(b, u[0:4])
	b = append(b, '-')
	b = appendHex(b, u[4:6])
	b = append(b, '-')
	b = appendHex(b, u[6:8])
	b = append(b, '-')
	b = appendHex(b, u[8:10])
	b = append(b, '-')
	return appendHex(b, u[10:16])
}

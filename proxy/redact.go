package proxy

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/devstack/devstack/proxy/trace"
)

// Redacted replaces the value of a header that carries credentials.
const Redacted = "[redacted]"

// DefaultRedact are the header names, and name fragments, whose values are
// never recorded.
var DefaultRedact = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "token", "secret", "key", "password"}

// Redactor decides which recorded header values are hidden. A header is
// redacted when its lowercased name equals or contains one of the words.
// Decisions are cached per header name: the set of names is small, and
// this runs for every header of every hop.
type Redactor struct {
	words  []string
	cache  sync.Map // canonical name → bool
	cached atomic.Int32
}

// maxCachedNames bounds the cache: header names come from clients, and a
// client inventing new ones must not grow the proxy's memory.
const maxCachedNames = 4096

// NewRedactor returns a Redactor for words (DefaultRedact when nil).
func NewRedactor(words []string) *Redactor {
	if words == nil {
		words = DefaultRedact
	}
	lw := make([]string, len(words))
	for i, w := range words {
		lw[i] = strings.ToLower(w)
	}
	return &Redactor{words: lw}
}

func (r *Redactor) redacts(name string) bool {
	if v, ok := r.cache.Load(name); ok {
		return v.(bool)
	}
	ln := strings.ToLower(name)
	hit := false
	for _, w := range r.words {
		if strings.Contains(ln, w) {
			hit = true
			break
		}
	}
	if r.cached.Add(1) <= maxCachedNames {
		r.cache.Store(name, hit)
	}
	return hit
}

// Headers converts h to recorded headers, redacting credentials.
func (r *Redactor) Headers(h http.Header) []trace.Header {
	if len(h) == 0 {
		return nil
	}
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	out := make([]trace.Header, 0, n)
	for name, vs := range h {
		red := r.redacts(name)
		for _, v := range vs {
			if red {
				v = Redacted
			}
			out = append(out, trace.Header{Name: name, Value: v})
		}
	}
	return out
}

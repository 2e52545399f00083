package proxy

import (
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/devstack/devstack/trace"
)

// Redacted replaces the value of a header that carries credentials.
const Redacted = "[redacted]"

// DefaultRedact are the header names, and name fragments, whose values are
// never recorded: "auth" covers Authorization, Proxy-Authorization,
// WWW-Authenticate, Authentication and X-Auth-*; "pass" covers Password,
// Passwd and X-Passphrase; "signature" and "hmac" cover webhook
// signatures (X-Hub-Signature-256, Stripe-Signature,
// X-Shopify-Hmac-Sha256); "cert" covers client certificates forwarded by
// a TLS terminator (X-Client-Cert, X-Forwarded-Client-Cert). Values are
// also redacted by their shape, whatever the name (see redactValue).
var DefaultRedact = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "password", "passwd",
	"auth", "token", "secret", "key", "pass", "session", "credential",
	"jwt", "signature", "hmac", "cert", "csrf", "xsrf"}

// Redactor decides which recorded header values are hidden. A header is
// redacted when its lowercased name equals or contains one of the words.
// Decisions are cached per header name: the set of names is small, and
// this runs for every header of every hop, so a known name is answered
// from a plain map read without a lock.
type Redactor struct {
	words []string
	query *QueryRule                      // for URLs in values; nil: the default rule
	known atomic.Pointer[map[string]bool] // canonical name → redact; never written once published
	mu    sync.Mutex
	newer map[string]bool // decided since known was published
}

// maxCachedNames bounds the cache: header names come from clients, and a
// client inventing new ones must not grow the proxy's memory.
const maxCachedNames = 4096

// NewRedactor returns a Redactor for DefaultRedact changed by more: each
// word of more is added, and a word written "!word" takes that word out of
// the defaults. So a list in the config can only widen what is hidden
// unless it says, word by word, what to show: forgetting the defaults
// when adding one's own header must not record everyone's cookies.
func NewRedactor(more []string) *Redactor {
	var words []string
	for _, w := range DefaultRedact {
		if !slices.ContainsFunc(more, func(m string) bool { return strings.EqualFold(m, "!"+w) }) {
			words = append(words, w)
		}
	}
	for _, w := range more {
		if lw := strings.ToLower(w); lw != "" && lw[0] != '!' && !slices.Contains(words, lw) {
			words = append(words, lw)
		}
	}
	return &Redactor{words: words}
}

func (r *Redactor) redacts(name string) bool {
	if m := r.known.Load(); m != nil {
		if v, ok := (*m)[name]; ok {
			return v
		}
	}
	ln := strings.ToLower(name)
	hit := false
	for _, w := range r.words {
		if strings.Contains(ln, w) {
			hit = true
			break
		}
	}
	r.remember(name, hit)
	return hit
}

// remember caches a decision. New names are published in batches that
// grow with the table (a new map each time, copied), so that a client
// inventing header names costs amortised constant work per name until
// the cache is full; a name seen again before its batch is published is
// published at once, so that a stable set of names is never left on the
// slow path.
func (r *Redactor) remember(name string, hit bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var known map[string]bool
	if m := r.known.Load(); m != nil {
		known = *m
	}
	_, seen := r.newer[name]
	if !seen {
		if len(known)+len(r.newer) >= maxCachedNames {
			return
		}
		if r.newer == nil {
			r.newer = map[string]bool{}
		}
		// A clone: name may point into a request head, which must not
		// stay on the heap for it.
		r.newer[strings.Clone(name)] = hit
	}
	if seen || len(r.newer) > len(known)/4 {
		m := make(map[string]bool, len(known)+len(r.newer))
		maps.Copy(m, known)
		maps.Copy(m, r.newer)
		r.known.Store(&m)
		clear(r.newer)
	}
}

// WithQuery makes r redact URLs in header values by rule q, and returns r.
func (r *Redactor) WithQuery(q *QueryRule) *Redactor {
	r.query = q
	return r
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
			} else {
				v = r.redactValue(v)
			}
			out = append(out, trace.Header{Name: name, Value: v})
		}
	}
	return out
}

// fields appends parsed header lines to dst as recorded headers,
// redacting credentials. Names are canonicalised so recorded headers read
// the same whichever path served the request. seen, when not nil, is the
// connection's memory of the names it sent before (see seenNames).
func (r *Redactor) fields(dst []trace.Header, fs []field, seen *seenNames) []trace.Header {
	for i, f := range fs {
		var n seenName
		if seen != nil && i < len(*seen) && (*seen)[i].raw == f.name {
			n = (*seen)[i]
		} else {
			n.canonical = textproto.CanonicalMIMEHeaderKey(f.name)
			n.redact = r.redacts(n.canonical)
			if seen != nil && i < maxSeenNames {
				// A copy: f.name is a slice of a head, which does not
				// last. The canonical name is a new string already when it
				// differs from the name as sent.
				n.raw = strings.Clone(f.name)
				if n.canonical == f.name {
					n.canonical = n.raw
				}
				for len(*seen) <= i {
					*seen = append(*seen, seenName{})
				}
				(*seen)[i] = n
			}
		}
		v := f.value
		if n.redact {
			v = Redacted
		} else {
			v = r.redactValue(v)
		}
		dst = append(dst, trace.Header{Name: n.canonical, Value: v})
	}
	return dst
}

// seenNames remembers, by position, the header names a connection's last
// head carried, canonical and with the redaction decision: a connection
// sends the same names in the same order head after head, so that each
// then costs one string comparison instead of canonicalising it and a
// lookup of the decision.
type seenNames []seenName

type seenName struct {
	raw, canonical string
	redact         bool
}

// maxSeenNames bounds seenNames: names past it are looked up each time.
const maxSeenNames = 32

package proxy

import (
	"slices"
	"strings"
)

// Redaction by value shape. A header's name does not always say that it
// carries a credential (X-Original-Url: /cb?code=…, X-Forwarded-Foo:
// Bearer …, a JWT in a custom header), so every value not already hidden
// by its name is also looked at:
//
//   - a value that starts with a credential scheme (Bearer, Basic,
//     Digest, Negotiate, …) followed by its credentials is hidden whole;
//   - a value that holds a JWT (three base64url parts, the first starting
//     "eyJ", the encoding of `{"`) is hidden whole;
//   - a value that holds a URL query (Referer, Location, …) keeps its
//     shape, and only the values of its sensitive parameters are hidden
//     (see RedactQuery).
//
// These checks run for every recorded header value, so they only scan
// the value and allocate nothing unless something is hidden.

// authSchemes are the HTTP authentication schemes whose credentials
// follow the scheme name (IANA's registry, plus common vendor ones).
var authSchemes = [...]string{"basic", "bearer", "digest", "dpop", "gnap", "hoba", "mutual",
	"negotiate", "ntlm", "oauth", "privatetoken", "scram-sha-1", "scram-sha-256", "token",
	"vapid", "aws4-hmac-sha256", "apikey", "sharedkey", "sso-key", "key"}

// redactValue returns v, or v with its credentials hidden; URLs in it by
// the Redactor's query rule.
func (rd *Redactor) redactValue(v string) string {
	if hasAuthScheme(v) || hasJWT(v) {
		return Redacted
	}
	if i := strings.IndexByte(v, '?'); i >= 0 {
		q := v[i+1:]
		if j := strings.IndexByte(q, '#'); j >= 0 {
			q = q[:j]
		}
		if r := rd.query.Redact(q); r != q {
			return v[:i+1] + r + v[i+1+len(q):]
		}
	}
	return v
}

// hasAuthScheme says whether v is "<scheme> <credentials>" for a known
// authentication scheme.
func hasAuthScheme(v string) bool {
	v = strings.TrimLeft(v, " \t")
	sp := strings.IndexAny(v, " \t")
	if sp <= 0 || sp > len("aws4-hmac-sha256") || strings.TrimSpace(v[sp:]) == "" {
		return false
	}
	for _, s := range authSchemes {
		if len(s) == sp && strings.EqualFold(v[:sp], s) {
			return true
		}
	}
	return false
}

// hasJWT says whether v holds a JSON Web Token (or any JWS/JWE in
// compact form): "eyJ", base64url, '.', base64url, '.'.
func hasJWT(v string) bool {
	for {
		i := strings.Index(v, "eyJ")
		if i < 0 {
			return false
		}
		v = v[i:]
		n := b64urlRun(v)
		if n+1 < len(v) && v[n] == '.' {
			rest := v[n+1:]
			m := b64urlRun(rest)
			if m > 0 && m < len(rest) && rest[m] == '.' {
				return true
			}
		}
		v = v[3:]
	}
}

func b64urlRun(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '=') {
			return i
		}
	}
	return len(s)
}

// sensitiveParams are words that, found in a query parameter's name, make
// its value a credential (access_token, client_secret, X-Amz-Signature,
// api_key, password, …); sensitiveExact are names too short to look for
// inside others (OAuth's code, Azure's sig).
var (
	sensitiveParams = [...]string{"token", "secret", "key", "pass", "auth", "session", "credential",
		"jwt", "signature", "ticket", "saml", "assertion", "hmac"}
	sensitiveExact = [...]string{"code", "sig", "otp", "pwd", "nonce"}
)

// RedactQuery returns the query string q (without its '?') with the
// values of its sensitive parameters replaced by Redacted, by the default
// rule (see QueryRule); q itself, and no allocation, when nothing is
// sensitive.
func RedactQuery(q string) string { return (*QueryRule)(nil).Redact(q) }

// QueryRule says which query parameters hold credentials, for the query
// strings the proxy records and for URLs in header values alike. A
// parameter is sensitive when its name (case folded, percent-decoding not
// applied) contains one of sensitiveParams or is one of sensitiveExact,
// changed by a project's list (see NewQueryRule). The values of its
// sensitive parameters are replaced by Redacted, keeping the names and
// order, so that a recorded URL still reads as what was asked. A nil
// *QueryRule is the default rule.
type QueryRule struct {
	words []string // contained in a sensitive name, lower case
	exact []string // a whole sensitive name, lower case
}

// NewQueryRule returns the default rule changed by more: each word is
// added (as a part of a name, like the defaults' "token"), and "!word"
// takes a default word out, of either list ("!code" records OAuth codes).
// As with header names, a list can only widen what is hidden unless it
// says, word by word, what to show.
func NewQueryRule(more []string) *QueryRule {
	r := &QueryRule{}
	drop := func(w string) bool {
		return slices.ContainsFunc(more, func(m string) bool { return strings.EqualFold(m, "!"+w) })
	}
	for _, w := range sensitiveParams {
		if !drop(w) {
			r.words = append(r.words, w)
		}
	}
	for _, w := range sensitiveExact {
		if !drop(w) {
			r.exact = append(r.exact, w)
		}
	}
	for _, w := range more {
		if lw := strings.ToLower(w); lw != "" && lw[0] != '!' && !slices.Contains(r.words, lw) {
			r.words = append(r.words, lw)
		}
	}
	return r
}

// Redact returns q with its sensitive values replaced: q itself, with
// no allocation, when nothing is sensitive.
func (r *QueryRule) Redact(q string) string {
	if !r.Hides(q) {
		return q
	}
	b, _ := r.AppendRedacted(make([]byte, 0, len(q)+16), q)
	return string(b)
}

// Hides reports whether q has a value to hide.
func (r *QueryRule) Hides(q string) bool {
	_, _, ok := r.next(q, 0)
	return ok
}

// AppendRedacted appends q to dst with its sensitive values replaced, and
// reports whether it replaced any. It allocates nothing dst has room for:
// the proxy builds a recorded query in a buffer on its stack.
func (r *QueryRule) AppendRedacted(dst []byte, q string) ([]byte, bool) {
	done, changed := 0, false
	for at := 0; ; {
		value, end, ok := r.next(q, at)
		if !ok {
			return append(dst, q[done:]...), changed
		}
		dst = append(dst, q[done:value]...)
		dst = append(dst, Redacted...)
		done, at, changed = end, end+1, true
	}
}

// next finds the first sensitive parameter of q at or after at: where
// its value starts and ends.
func (r *QueryRule) next(q string, at int) (value, end int, ok bool) {
	for at < len(q) {
		end = strings.IndexAny(q[at:], "&;")
		if end < 0 {
			end = len(q)
		} else {
			end += at
		}
		pair := q[at:end]
		if eq := strings.IndexByte(pair, '='); eq > 0 && eq < len(pair)-1 && r.sensitive(pair[:eq]) && pair[eq+1:] != Redacted {
			return at + eq + 1, end, true
		}
		at = end + 1
	}
	return 0, 0, false
}

func (r *QueryRule) sensitive(name string) bool {
	if r == nil {
		return sensitiveParam(name)
	}
	for _, w := range r.exact {
		if strings.EqualFold(name, w) {
			return true
		}
	}
	for _, w := range r.words {
		if containsFold(name, w) {
			return true
		}
	}
	return false
}

func sensitiveParam(name string) bool {
	for _, w := range sensitiveExact {
		if strings.EqualFold(name, w) {
			return true
		}
	}
	for _, w := range sensitiveParams {
		if containsFold(name, w) {
			return true
		}
	}
	return false
}

// containsFold is strings.Contains with ASCII case folding of s (w is
// lower case), without allocating.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}

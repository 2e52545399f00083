package fault

import "errors"

// checkGlob rejects what match would treat oddly: an empty pattern is no
// route matcher, so anything goes.
func checkGlob(p string) error {
	if len(p) > 0 && p[0] != '/' && p[0] != '*' && p[0] != '?' {
		return errors.New("a route starts with / (or a wildcard)")
	}
	return nil
}

// match reports whether s matches the glob p: * is any run of characters,
// slashes included, ? is one character. It allocates nothing, and on a
// mismatch backtracks only to the last star, so it is linear in practice.
func match(p, s string) bool {
	var pi, si int
	star, next := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, next = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case star >= 0:
			pi = star + 1
			next++
			si = next
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

package propagate

import (
	"fmt"
	"strings"
)

// Formats is a set of trace header formats, for Inject and for config.
type Formats uint8

// Trace header formats. Values are bits; combine them with |.
const (
	// FormatW3C is W3C Trace Context: traceparent and tracestate.
	FormatW3C Formats = 1 << 0
	// FormatSentry is sentry-trace, plus the Sentry dynamic sampling
	// context in baggage.
	FormatSentry Formats = 1 << 1
	// FormatB3 is Zipkin B3 as the single b3 header.
	FormatB3 Formats = 1 << 2
	// FormatB3Multi is Zipkin B3 as X-B3-TraceId, X-B3-SpanId,
	// X-B3-ParentSpanId, X-B3-Sampled and X-B3-Flags.
	FormatB3Multi Formats = 1 << 3

	// DefaultFormats is what the proxy writes unless configured otherwise.
	DefaultFormats = FormatW3C | FormatSentry | FormatB3

	allFormats = FormatW3C | FormatSentry | FormatB3 | FormatB3Multi
)

var formatNames = [...]struct {
	f    Formats
	name string
}{
	{FormatW3C, "w3c"},
	{FormatSentry, "sentry"},
	{FormatB3, "b3"},
	{FormatB3Multi, "b3multi"},
}

// Has reports whether f includes every format in g.
func (f Formats) Has(g Formats) bool { return f&g == g }

// String returns the formats as ParseFormats reads them, e.g.
// "w3c,sentry,b3", or "none" for the empty set.
func (f Formats) String() string {
	if f == 0 {
		return "none"
	}
	var b strings.Builder
	for _, fn := range formatNames {
		if f&fn.f != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(fn.name)
		}
	}
	if rest := f &^ allFormats; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "Formats(%#x)", uint8(rest))
	}
	return b.String()
}

// ParseFormats reads a comma-separated list of format names, as written in
// devstack config: w3c, sentry, b3, b3multi; or "none" alone to propagate
// no trace headers. Names are case-insensitive and may be surrounded by
// spaces; repeats are harmless. An unknown or empty name, or "none" with
// others, fails with an error wrapping ErrBadFormats that says which.
func ParseFormats(s string) (Formats, error) {
	const want = "want a comma-separated list of w3c, sentry, b3, b3multi, or none alone"
	var f Formats
	none := false
	for part := range strings.SplitSeq(s, ",") {
		name := strings.ToLower(strings.TrimSpace(part))
		switch name {
		case "none":
			none = true
			continue
		case "":
			return 0, fmt.Errorf("%w %q: an empty name; %s", ErrBadFormats, s, want)
		}
		found := false
		for _, fn := range formatNames {
			if name == fn.name {
				f |= fn.f
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("%w %q: unknown name %q; %s", ErrBadFormats, s, strings.TrimSpace(part), want)
		}
	}
	if none && f != 0 {
		return 0, fmt.Errorf("%w %q: \"none\" cannot be combined with other formats; %s", ErrBadFormats, s, want)
	}
	return f, nil
}

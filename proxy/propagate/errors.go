package propagate

import "errors"

// Sentinel errors. Check them with errors.Is; the returned errors wrap them
// with the offending value.
var (
	// ErrBadFormats reports a list of trace header formats ParseFormats
	// cannot read: an unknown or empty name, or "none" with others.
	ErrBadFormats = errors.New("bad trace header formats")

	// ErrInvalidTraceStateKey reports a tracestate key outside the W3C
	// grammar (simple key or tenant@system).
	ErrInvalidTraceStateKey = errors.New("invalid tracestate key")

	// ErrInvalidTraceStateValue reports a tracestate value outside the W3C
	// grammar (1-256 printable ASCII characters except ',' and '=', not
	// ending in a space).
	ErrInvalidTraceStateValue = errors.New("invalid tracestate value")

	// ErrInvalidBaggageMember reports a baggage list-member outside the W3C
	// Baggage grammar.
	ErrInvalidBaggageMember = errors.New("invalid baggage member")

	// ErrBaggageLimit reports that adding a baggage list-member would exceed
	// MaxBaggageBytes.
	ErrBaggageLimit = errors.New("baggage limit exceeded")
)

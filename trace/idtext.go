package trace

import "fmt"

// UnmarshalText reads the lowercase hex form, for JSON from the control API.
func (id *TraceID) UnmarshalText(b []byte) error {
	v, ok := ParseTraceID(string(b))
	if !ok && len(b) != 0 && string(b) != "00000000000000000000000000000000" {
		return fmt.Errorf("trace id %q: want 32 hex digits", b)
	}
	*id = v
	return nil
}

// UnmarshalText reads the lowercase hex form, for JSON from the control API.
func (id *SpanID) UnmarshalText(b []byte) error {
	v, ok := ParseSpanID(string(b))
	if !ok && len(b) != 0 && string(b) != "0000000000000000" {
		return fmt.Errorf("span id %q: want 16 hex digits", b)
	}
	*id = v
	return nil
}

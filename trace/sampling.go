package trace

import "strconv"

// Sampling is a sampling decision as B3 and sentry-trace carry it. W3C
// traceparent has no "deferred" state: its sampled bit is 0 or 1.
type Sampling uint8

// Sampling decisions.
const (
	// SamplingDeferred means no decision was made: the receiver decides.
	SamplingDeferred Sampling = 0
	// SamplingDeny means the caller did not record the trace.
	SamplingDeny Sampling = 1
	// SamplingAccept means the caller records the trace.
	SamplingAccept Sampling = 2
	// SamplingDebug is B3's forced trace: accept, and mark every span debug.
	SamplingDebug Sampling = 3
)

// Sampled reports whether s is an accept decision (SamplingAccept or
// SamplingDebug).
func (s Sampling) Sampled() bool { return s == SamplingAccept || s == SamplingDebug }

// String returns "deferred", "deny", "accept" or "debug".
func (s Sampling) String() string {
	switch s {
	case SamplingDeferred:
		return "deferred"
	case SamplingDeny:
		return "deny"
	case SamplingAccept:
		return "accept"
	case SamplingDebug:
		return "debug"
	}
	return "Sampling(" + strconv.Itoa(int(s)) + ")"
}

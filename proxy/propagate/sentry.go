package propagate

import "github.com/devstack/devstack/trace"

// SentryTrace is a parsed sentry-trace header:
// <32 hex trace id>-<16 hex span id>[-<0|1>].
type SentryTrace struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	// Sampling is SamplingDeferred when the third field is absent. Format
	// writes SamplingDebug as "1": Sentry has no debug state.
	Sampling trace.Sampling
}

const (
	sentryTraceLen        = 32 + 1 + 16
	sentryTraceSampledLen = sentryTraceLen + 2
)

// ParseSentryTrace parses a sentry-trace header value. Leading and trailing
// SP/HTAB are ignored; hex must be lowercase; all-zero ids are rejected;
// the optional sampled field is exactly "0" or "1".
func ParseSentryTrace(s string) (SentryTrace, bool) {
	s = trimOWS(s)
	var st SentryTrace
	switch len(s) {
	case sentryTraceLen:
	case sentryTraceSampledLen:
		if s[sentryTraceLen] != '-' {
			return SentryTrace{}, false
		}
		switch s[sentryTraceLen+1] {
		case '0':
			st.Sampling = trace.SamplingDeny
		case '1':
			st.Sampling = trace.SamplingAccept
		default:
			return SentryTrace{}, false
		}
	default:
		return SentryTrace{}, false
	}
	if s[32] != '-' || !decodeHex(st.TraceID[:], s[:32]) || !decodeHex(st.SpanID[:], s[33:49]) ||
		!st.TraceID.IsValid() || !st.SpanID.IsValid() {
		return SentryTrace{}, false
	}
	return st, true
}

// Format returns the header value.
func (st SentryTrace) Format() string {
	var buf [sentryTraceSampledLen]byte
	return string(st.AppendFormat(buf[:0]))
}

// String is Format.
func (st SentryTrace) String() string { return st.Format() }

// AppendFormat appends the header value to dst.
func (st SentryTrace) AppendFormat(dst []byte) []byte {
	dst = appendHex(dst, st.TraceID[:])
	dst = append(dst, '-')
	dst = appendHex(dst, st.SpanID[:])
	switch st.Sampling {
	case trace.SamplingDeny:
		dst = append(dst, '-', '0')
	case trace.SamplingAccept, trace.SamplingDebug:
		dst = append(dst, '-', '1')
	}
	return dst
}

const sentryBaggagePrefix = "sentry-"

// SentryDSC is the Sentry dynamic sampling context devstack can put in
// baggage as sentry-* members. Empty string fields are left out.
type SentryDSC struct {
	// TraceID becomes sentry-trace_id. Required: a DSC without it is not
	// written.
	TraceID trace.TraceID
	// PublicKey becomes sentry-public_key (the DSN's public key). Sentry
	// needs it for dynamic sampling; see AppendSentryBaggage.
	PublicKey string
	// Release becomes sentry-release.
	Release string
	// Environment becomes sentry-environment.
	Environment string
	// Transaction becomes sentry-transaction.
	Transaction string
	// SampleRate becomes sentry-sample_rate, a decimal such as "0.25".
	SampleRate string
	// Sampled becomes sentry-sampled=true/false; left out when deferred.
	Sampled trace.Sampling
}

// AppendSentryBaggage returns baggage with the DSC appended as sentry-*
// members, only if baggage holds no sentry-* member yet. Sentry freezes the
// DSC at the head of the trace: once any sentry-* member is present the
// baggage is returned unchanged, and other members are never touched, so
// this appends and never replaces. Values are percent-encoded. A member that
// would exceed MaxBaggageBytes is left out.
//
// Caution: whatever is appended freezes the DSC for every SDK downstream. A
// DSC without PublicKey lets Sentry link the trace but not sample it
// dynamically, so set PublicKey when it is known.
func AppendSentryBaggage(baggage string, dsc SentryDSC) string {
	if !dsc.TraceID.IsValid() || hasSentryBaggage(baggage) {
		return baggage
	}
	base := normalizeBaggage([]string{baggage})
	return string(appendSentryBaggage(nil, base, &dsc))
}

// appendSentryBaggage appends base (canonical baggage without sentry-*
// members) followed by the DSC members that fit within the limits.
func appendSentryBaggage(b []byte, base string, dsc *SentryDSC) []byte {
	b = append(b, base...)
	size := len(base)
	add := func(key, value string, hexID []byte) bool {
		n := len(sentryBaggagePrefix) + len(key) + 1 + len(hexID) + percentEncodedLen(value)
		if size > 0 {
			n++ // comma
		}
		if size+n > MaxBaggageBytes {
			return false
		}
		if size > 0 {
			b = append(b, ',')
		}
		b = append(b, sentryBaggagePrefix...)
		b = append(b, key...)
		b = append(b, '=')
		if hexID != nil {
			b = append(b, hexID...)
		} else {
			b = appendPercentEncoded(b, value)
		}
		size += n
		return true
	}
	var id [32]byte
	if !add("trace_id", "", appendHex(id[:0], dsc.TraceID[:])) {
		return b // a context without its trace id would only mislead
	}
	for _, kv := range [...]struct{ k, v string }{
		{"public_key", dsc.PublicKey},
		{"release", dsc.Release},
		{"environment", dsc.Environment},
		{"transaction", dsc.Transaction},
		{"sample_rate", dsc.SampleRate},
	} {
		if kv.v != "" {
			add(kv.k, kv.v, nil)
		}
	}
	switch dsc.Sampled {
	case trace.SamplingAccept, trace.SamplingDebug:
		add("sampled", "true", nil)
	case trace.SamplingDeny:
		add("sampled", "false", nil)
	}
	return b
}

// percentEncodedLen returns the length of s once percent-encoded for a
// baggage value.
func percentEncodedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if needsPercent(s[i]) {
			n += 2
		}
	}
	return n
}

// appendPercentEncoded appends s with every byte that is not a
// baggage-octet, and '%' itself, escaped as %XX (RFC 3986 style, uppercase
// hex).
func appendPercentEncoded(b []byte, s string) []byte {
	const upper = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsPercent(c) {
			b = append(b, '%', upper[c>>4], upper[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

func needsPercent(c byte) bool { return c == '%' || !isBaggageOctet(c) }

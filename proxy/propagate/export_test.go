package propagate

// Internal fast paths, exported to the external tests so fuzzing can check
// them against the general parsers.
var (
	NormalizeTraceState = normalizeTraceState
	NormalizeBaggage    = normalizeBaggage
)

// Package store is the span store: Store records spans (trace.Recorder)
// into an in-memory index of at most MaxSpans spans, evicting whole oldest
// traces, and an append-only log of segment files that Open replays, so
// traces survive a restart; it answers trace.Reader's queries from the
// index. SummaryFile reads the summary a store writes as it closes, so that
// listing traces with devstack down needs no replay.
//
// See Store for the design (why a log and no database, memory, durability)
// and segment.go and summaryfile.go for the formats on disk.
package store

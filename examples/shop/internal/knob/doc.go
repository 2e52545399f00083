// Package knob parses the fault knobs that shop services read from query
// parameters and forward down the call chain:
//
//	?slow=payments:300ms,fraud:1s   payments sleeps 300ms, fraud sleeps 1s
//	?fail=inventory:503              inventory answers 503
//
// Entries are comma-separated and a parameter may repeat. Every service
// parses every entry (so a typo fails fast at the gateway with 400) but acts
// only on the entries that name itself.
package knob

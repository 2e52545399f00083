// Package host runs devstack's plugins: the built-in ones (the devstack
// binary re-executed as `devstack plugin NAME`) and the external ones a
// project declares in x-devstack.plugins (a path, and optionally the
// binary's sha256, checked by go-plugin's SecureConfig before it runs).
//
//	Host.Start ──► per plugin: launch ─► Info ─► Session(Config) ─► serve
//	                  ▲                                   │ rule sets → fault.Table (compiled here)
//	                  │ backoff 100 ms … 30 s             │ actions   → Options.Act
//	                  └── crashed, or silent to pings ◄───┘ events    ← Host.Event
//
// A plugin that crashes, or stops answering its liveness pings, is logged,
// killed and started again with backoff; the proxy keeps applying the
// rules it last pushed, and the new process starts from them (Config.Rules)
// so it re-syncs rather than starting empty. The proxy and the stack never
// wait on a plugin: rules are compiled into the fault.Table the proxy reads
// per request, and events are dropped (and counted) rather than queued
// without bound for a plugin that does not keep up.
package host

// Package sdk is the one package a devstack plugin imports. A plugin is a
// program that calls Serve with something that implements Plugin; devstack
// starts it (built-in plugins are the devstack binary itself, run as
// `devstack plugin NAME`; others are declared in x-devstack.plugins),
// speaks gRPC to it through hashicorp/go-plugin, and restarts it with
// backoff if it crashes or stops answering.
//
// A plugin has two seams, both small:
//
//	devstack (host)                               plugin
//	   │── Config (services, options, last rules) ──►│ Plugin.Start
//	   │── runner events ───────────────────────────►│ EventHandler (optional)
//	   │◄── RuleSet (fault rules, compiled in-process)│ Host.PushRules
//	   │◄── Action (restart, rebuild a service) ──────│ Host.Act
//	   │── commands (fault add, ls, ...) ───────────►│ Commander (optional)
//
// Rules are pushed whole and applied by the proxy in-process: no message
// crosses to a plugin per proxied request (a go-plugin call costs about
// 150 µs, a whole proxied request about 30 µs). When a plugin restarts,
// its Config carries the rules it last pushed, so it picks up where it
// was; meanwhile the proxy keeps applying them.
//
// The wire format is internal (plugins/sdk/internal/pluginpb) and
// versioned by ProtocolVersion; this package converts at the edge.
package sdk

// Package supervisor is the composition root of a running stack: the one
// package that knows every other. It wires one project's Runner (with the
// backends the CLI chose), the tracing proxy in front of the services'
// ports, the span store the proxy records into, the log store, and the
// control API the CLI talks to; and it owns the project's state directory
// (lock, token, pid records, logs, spans), cleaning up what an earlier,
// killed supervisor left behind.
//
//	devstack up ─┬─ foreground: supervisor in-process, logs to the terminal
//	             └─ -d: re-exec `devstack supervise` detached, wait over the API
//	devstack ps/logs/traces/stop/start/restart/down ──► control API (unix socket)
//
//	                 supervisor.Start
//	   ┌───────────────┬──────┴───────┬────────────────┬──────────────┐
//	 runner        proxy ──record──► trace/store    control API     plugins/host
//	 (backends)    (plan: which ports it fronts,     (ps, logs, traces,  (built-ins re-executed
//	               private ports, ambassadors)        up/stop/down,      as `devstack plugin NAME`,
//	                 ▲ reads per request              faults, plugins)   x-devstack.plugins)
//	                 └──── fault.Table ◄── rules the plugins push ───────────┘
//
// plugins.go turns x-devstack.plugins and x-devstack.faults into plugin
// specs (a bad scenario fails Start, naming the file), hands runner events
// to the plugins and carries out their actions.
//
// Imports run down only (cmd → supervisor → control, proxy, runner →
// proxy/propagate → trace/store, trace/render → trace); layers_test.go
// fails the build's tests when one runs back up, and pkgstate_test.go when
// a package variable is written (state belongs to what owns it).
package supervisor

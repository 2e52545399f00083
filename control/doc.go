// Package control is the supervisor's HTTP API and its client. The CLI's
// ps, logs, traces, stop, start, restart and down talk to a running
// supervisor through it.
//
// It listens on a unix socket in the project's state directory (mode 0600,
// in a 0700 directory). Reads are open to whoever can reach the socket;
// mutating calls (POST) also need the project's token, sent as
// "Authorization: Bearer <token>".
//
// Long operations stream NDJSON: progress Messages, then one final Message
// with Done set and Error filled on failure.
//
//	GET  /v1/ps                         []runner.ServiceStatus
//	GET  /v1/wait                       progress of the initial `up`, then its result
//	GET  /v1/logs?service=&tail=&since=&follow=1   NDJSON LogLines
//	GET  /v1/traces?service=&status=&errors=&min_duration=&since=&route=&id_prefix=&limit=
//	                                    []trace.Summary (see ParseTraceQuery)
//	GET  /v1/traces/{id}                the trace's []*trace.Span
//	POST /v1/{up,start,stop,restart}    {"services":[...]} → progress stream
//	POST /v1/down                       {"volumes":true} stop everything; the supervisor exits after
//	POST /v1/handover                   stop processes, keep containers; the supervisor
//	                                    exits after, for one with a changed file
//	GET  /v1/plugins                    []PluginStatus
//	GET  /v1/faults                     FaultList (the fault plugin's rules)
//	POST /v1/faults                     fault.Spec → the fault.Rule added
//	PUT  /v1/faults                     fault.Scenario → FaultList (replaces every rule)
//	DELETE /v1/faults[/{id}]            remove one rule, or all
//
// Calls that stop services (stop, restart, down, handover) also take
// {"grace":"5s"}: a Go duration that replaces, for that call, every
// stopped service's stop_grace_period (docker compose's -t); absent, each
// service's own.
//
// The server knows the stack only through Server's fields (Stack, a
// trace.Reader, the log directory), which the supervisor fills: control
// imports runner, runner/logstore and trace, and sits below the supervisor.
package control

// Package supervisor runs one project's Runner as a long-lived supervisor:
// it owns the project's state directory (lock, token, pid records, logs),
// cleans up what an earlier, killed supervisor left behind, and serves the
// control API that the CLI talks to.
//
//	devstack up ─┬─ foreground: supervisor in-process, logs to the terminal
//	             └─ -d: re-exec `devstack supervise` detached, wait over the API
//	devstack ps/logs/stop/start/restart/down ──► control API (unix socket)
package supervisor

// Package proc reads /proc to identify, find and stop the processes that
// devstack supervises, and to say who holds a port.
//
//	supervisor ──exec with DEVSTACK_INSTANCE=<project>/<service>/<nonce>──► service
//	                                                                          │ fork/exec
//	                                                                          ▼
//	                                                                     grandchildren
//	                                                                   (inherit the marker)
//
//	devstack down / next devstack up:
//	  FindByMarkerPrefix("<project>/") ── scans /proc/*/environ ──► marker → pids
//	  KillTree(ctx, pids, SIGTERM, grace) ── signal groups and descendants,
//	                                         wait on pidfds, SIGKILL survivors
//
// A pid alone is not an identity: the kernel reuses pids. An [Identity] pairs
// the pid with the process start time (field 22 of /proc/<pid>/stat), which
// together name one process for the lifetime of the boot.
//
// Everything except [PortFree] needs Linux procfs. Processes of other users
// are skipped silently where procfs refuses to show them.
package proc

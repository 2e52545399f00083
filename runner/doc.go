// Package runner supervises a project's services: it walks the dependency
// graph to start them in order (in parallel where the graph allows), waits on
// depends_on conditions, runs healthchecks, restarts by policy with
// exponential backoff, and stops them in reverse order.
//
//	project.Project ──► Runner.Up ──► per service: wait deps ─► Backend.Start ─► Instance
//	                                                 ▲                            │
//	                              status broadcast ──┘      health / exit ◄───────┘
//
// Backends (runner/process, later runner/docker) only know how to start one
// instance and stop it; policy lives here, so every backend gets the same
// lifecycle guarantees.
package runner

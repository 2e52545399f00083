// Package runner supervises a project's services: it walks the dependency
// graph to start them in order (in parallel where the graph allows), waits on
// depends_on conditions, runs healthchecks, restarts by policy with
// exponential backoff, and stops them in reverse order.
//
//	project.Project ──► Runner.Up ──► per service: wait deps ─► Backend.Start ─► Instance
//	                                                 ▲                            │
//	                              status broadcast ──┘      health / exit ◄───────┘
//
// Backends (runner/process, runner/docker) only start and stop one
// instance; policy lives here, so every backend gets the same lifecycle
// guarantees. What a backend can do beyond that, it says with small
// optional interfaces, never with its name:
//
//	Builder        builds before the first start (x-devstack.build, build:)
//	Preparer       does part of a start ahead, while dependencies come up
//	Cleaner        owns project-wide objects (networks, volumes) that down removes
//	Networked      instances run in a network of their own: the runner builds
//	               each Spec as for a host process and hands it to Wire, which
//	               publishes the ports for that network
//	Reacher        says at which address its instances reach each service's
//	               port (the host's view, a container's); the runner rewrites
//	               the addresses the file writes to those, and adds the
//	               discovery variables DEVSTACK_URL_<NAME> (reach.go)
//	Fronter        makes a service of another backend answer to its name
//	               among its instances (Docker: an ambassador for a process)
//	Lasting        instances outlive their supervisor (a handover keeps them)
//	Rebuilder      builds again for a hot reload (Build may reuse a build)
//	Syncer         copies a reload's files into a running instance
//	Besider        a Networked backend starts a replacement beside the live
//	               instance (own names, fresh private ports) for a hot reload
//	               without downtime, and hands it what they share (Replace)
//	Execer         (instance) the runner runs its healthcheck in it
//	HealthReporter (instance) its engine runs the healthcheck
//	PortProber     (instance) its published ports accept before it listens:
//	               a replacement's readiness asks it
//	HealthProber   (instance) runs its engine's healthcheck once, now: a
//	               replacement need not wait for the engine's schedule
//
// A third backend (a remote engine, Kubernetes, a plugin) implements what
// applies and touches no code here.
//
// Ports: every service's declared port (project.Port.Declared) is the one
// callers use. Options.ListenPort says where an instance listens instead,
// when the proxy owns the declared port; the runner puts that port in the
// service's port variables (x-devstack.port_env, DEVSTACK_PORT_<target>),
// or the target port for a Networked backend's instances, which publish the
// private port instead.
//
// A service the user runs (x-devstack.external, Options.External) is never
// started: it is StateExternal, ready for its dependents; HostRun says how
// to run it in devstack's place, and Start takes it back (external.go).
//
// The runner imports runner/project, runner/health and runner/proc only:
// the proxy, the span store and the control API are wired to it by the
// supervisor.
package runner

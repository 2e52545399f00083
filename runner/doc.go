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
//	               rewrites addresses and published ports for that network
//	Lasting        instances outlive their supervisor (a handover keeps them)
//	Execer         (instance) the runner runs its healthcheck in it
//	HealthReporter (instance) its engine runs the healthcheck
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
// The runner imports runner/project, runner/health and runner/proc only:
// the proxy, the span store and the control API are wired to it by the
// supervisor.
package runner

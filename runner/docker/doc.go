// Package docker is the runner Backend that runs services as Docker
// containers through the Docker Engine API (github.com/moby/moby/client).
//
// It behaves like `docker compose up` for the same file: containers are
// named <project>-<service>-<n>, join <project>_default (and the networks
// they declare) with the service name as a DNS alias, and carry Compose's
// labels so that `docker ps` and Docker Desktop group them as a project.
// What Compose delegates to the engine's restart policy, devstack keeps in
// the runner: containers are created with restart policy "no" and the
// runner restarts them, with backoff, like any other backend's instances.
//
//	runner ──Build──▶ Backend ──/build (tar of context, .dockerignore)──▶ engine
//	       │                  └─/images/create (only when missing)
//	       └─Start──▶ Backend ──networks, volumes (lazily, once)───────▶ engine
//	                     │      containers -1..-N: adopt when running with
//	                     │      the same config hash, else recreate
//	                     ▼
//	                 Instance ──logs (stdcopy)──▶ Spec.Stdout / Spec.Stderr
//	                     │  ◀──events health_status── engine healthcheck
//	                     │──Health() chan──▶ runner (depends_on: service_healthy)
//	                     └──ContainerWait──▶ Wait() Exit
//
// Every object it creates (containers, networks, volumes, images) is
// labelled dev.devstack.project, so Down can clean up after a devstack that
// was killed before it could stop its containers.
//
// Mixed stacks: a host process reaches a container through its published
// port on 127.0.0.1; a container reaches a host process through
// host.docker.internal, which every container gets as an extra host. The
// runner knows none of this: the backend is runner.Networked, and its Wire
// (wire.go) rewrites each spec the runner built as for a host process,
// publishing ports the proxy fronts on their private ports and rewriting
// localhost:<port> addresses in the environment. It is also runner.Lasting:
// containers outlive the supervisor, so a handover keeps them and the next
// supervisor adopts them.
//
// Calls by service name: when the proxy fronts a container service
// (runner.Spec.Ambassador), an ambassador container takes over the
// service's names on its networks and relays each connection to the proxy
// on the host, with a PROXY protocol v1 line naming the calling container;
// the service's own container answers to devstack-real-<service>. The
// ambassador runs `devstack ambassador` from an image made of the running
// devstack binary and the libraries it links (ambassador.go, ambimage.go,
// relay.go).
//
// Hot reload (runner.Besider, beside.go): a replacement container starts
// beside the running one under a temporary name, on fresh private ports;
// once the proxy switched to it, it takes over the replica's name and the
// ambassador, and the runner drains and removes the old one.
//
// Shared ambassadors (shared.go): when the runner gives every service's
// ambassador (runner.Spec.Ambassadors), one container per project serves
// them all, started once at the project's first start.
package docker

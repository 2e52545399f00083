package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/devstack/devstack/runner/project"
)

// Backend starts instances of services. It knows nothing of dependencies,
// health or restarts: those are the runner's.
type Backend interface {
	// Name is the backend's name as users write it ("process", "docker").
	Name() string
	// Start starts one instance of spec's service and returns once it runs.
	Start(ctx context.Context, spec Spec) (Instance, error)
}

// Builder is implemented by backends that can build a service before its
// first start (x-devstack.build for processes, build: for Docker).
type Builder interface {
	Build(ctx context.Context, spec Spec) error
}

// Rebuilder is implemented by backends whose Build may skip work done
// before (the Docker backend builds an image once per life): Rebuild
// builds again from the sources as they are now. A hot reload uses it.
type Rebuilder interface {
	Rebuild(ctx context.Context, spec Spec) error
}

// Syncer is implemented by backends that can copy files into a running
// instance (containers, through the engine); a hot reload's sync uses it.
// Process services need none: their files are on the host.
type Syncer interface {
	Sync(ctx context.Context, inst Instance, files []FileCopy) error
}

// FileCopy is one file a sync copies: Src on the host to Dst in the
// instance; Removed removes Dst instead.
type FileCopy struct {
	Src, Dst string
	Removed  bool
}

// Preparer is implemented by backends that can do part of a start ahead,
// while the service still waits on its dependencies (Docker creates its
// containers and starts its ambassador). Each start of a stack's later
// layers is then shorter, and those starts are its critical path.
// Prepare is best effort: what it did not do, Start does. undo, when not
// nil, removes what it made; the runner calls it when the service ends up
// never started (a dependency failed, or the stack was stopped first).
type Preparer interface {
	Prepare(ctx context.Context, spec Spec) (undo func(), err error)
}

// Networked is implemented by backends whose instances run in a network
// of their own (containers): "localhost" in an instance is the instance
// itself, an instance listens on its target ports, and the host reaches it
// through the host ports the backend publishes, whichever it is told. The
// runner builds each Spec as for a process on the host (the service's
// declared ports, addresses of other services as callers on the host use
// them), sets the port variables (x-devstack.port_env, DEVSTACK_PORT_*) to
// the target ports and Spec.Ambassador from Options.Ambassador, then hands
// the spec to Wire, which adapts the rest to the backend's network: the
// host ports to publish (Stack.ListenPort), and the other services'
// addresses in the environment.
type Networked interface {
	Wire(spec Spec, stack Stack) Spec
}

// Besider is implemented by Networked backends that can run a second
// instance of a service beside the live one, for a hot reload without
// downtime (Replace): the new instance publishes the fresh private ports
// of its spec and answers to the same names on the same networks.
// StartBeside returns an error wrapping ErrNotBeside, having done
// nothing, when the service cannot run twice at once (a fixed
// container_name, another service in its network namespace); Replace
// then restarts it in place. Switched is called once the proxy routes to
// next and before old is stopped: next takes over what the two share
// (names, an ambassador), so that stopping old leaves next whole. When
// next fails before that, the runner stops it and old keeps everything.
type Besider interface {
	StartBeside(ctx context.Context, spec Spec, old Instance) (Instance, error)
	Switched(ctx context.Context, old, next Instance)
}

// Standbyer is implemented by Besiders that can ready the next instance
// of a service ahead of its reload: most of a container's start is the
// engine's (a new container, its network and its mounts), and that part
// needs nothing of the new code. The runner calls PrepareStandby after a
// reload, with the spec (fresh private ports, the next generation's
// marker) that the next reload's StartBeside will be given; StartBeside
// takes the standby over when it fits that spec and the new build, and
// otherwise drops it and starts afresh. A standby is dropped too when cur
// stops. PrepareStandby returns an error, having left nothing, when the
// service cannot have one; the runner says why and goes on without.
type Standbyer interface {
	PrepareStandby(ctx context.Context, spec Spec, cur Instance) error
}

// ErrNotBeside says that a service cannot run beside its live instance
// (see Besider).
var ErrNotBeside = errors.New("cannot run a second instance beside the live one")

// HealthProber is implemented by instances whose engine runs their
// healthcheck on its own schedule (HealthReporter) but can also run it
// once, now: a replacement's readiness runs it meanwhile (probePace),
// rather than wait for the engine's first verdict (which engines before
// API 1.44 give only after a whole interval).
type HealthProber interface {
	ProbeHealth(ctx context.Context) error
}

// PortProber is implemented by instances whose published ports may
// accept a connection before anything listens behind them (an engine's
// port proxy accepts, then finds nothing): a replacement without a
// healthcheck is ready once ProbePort says its target port answers,
// rather than once its private port accepts.
type PortProber interface {
	ProbePort(ctx context.Context, target, published uint16) error
}

// Stack is what a Networked backend may ask the runner about the other
// services of the stack.
type Stack interface {
	// ListenPort is the host port where the instance of service listens
	// (or is published) for its declared port p: a private port when the
	// proxy fronts p, else p.Declared().
	ListenPort(service string, p project.Port) uint16
	// Backend is the backend that runs service, nil when none does.
	Backend(service string) Backend
}

// Lasting is implemented by backends whose instances outlive the process
// that started them (an engine runs them). A handover to a new supervisor
// leaves them running, for the new one to adopt; instances of other
// backends stop with their supervisor.
type Lasting interface {
	Lasting() bool
}

// IsLasting reports whether b's instances outlive their supervisor.
func IsLasting(b Backend) bool {
	l, ok := b.(Lasting)
	return ok && l.Lasting()
}

// Instance is one running incarnation of a service.
type Instance interface {
	// ID identifies the instance for humans: a pid or a container id.
	ID() string
	// Wait blocks until the instance has exited and reports how.
	Wait() Exit
	// Stop sends sig, waits up to grace, then kills. Cancelling ctx kills at
	// once. Stop returns when the instance and everything it spawned is gone.
	Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error
}

// Halter is implemented by instances whose stop has two parts: the
// instance ends (its processes have exited), then what it leaves is
// removed (a container, which the engine also takes a moment to tear
// down). Halt does the first part and returns remove, the second, which
// the caller must run; remove also returns the first part's late errors.
// Down stops a service's dependencies as soon as the service has ended,
// removing meanwhile, and returns once everything is removed.
type Halter interface {
	Halt(ctx context.Context, sig syscall.Signal, grace time.Duration) (remove func(context.Context) error, err error)
}

// HostProcess is implemented by instances that are a process on this host
// (the process backend's): the supervisor records their pid, to clean up
// after a SIGKILL, and finds which service opened a connection by the
// process tree that holds its socket. An instance ID is for humans and
// never parsed.
type HostProcess interface {
	PID() int
}

// Execer is implemented by instances whose healthcheck the runner runs
// itself (processes). It runs argv in the service's environment.
type Execer interface {
	Exec(ctx context.Context, argv []string) (exitCode int, output []byte, err error)
}

// HealthReporter is implemented by instances whose engine runs the
// healthcheck itself (Docker follows it through events). The runner then
// does not probe: it reads verdicts from the channel, which the instance
// closes when it exits.
type HealthReporter interface {
	Health() <-chan Health
}

// Quitter is implemented by backends with project-wide helpers that serve
// the services while they run (Docker's shared ambassador): Down calls
// Quit once every service has ended, so that the helpers go while the
// services' own leftovers are being removed rather than after them. Quit
// does not block; the backend's Cleaner.Down waits for what it began.
type Quitter interface {
	Quit(project string)
}

// Cleaner is implemented by backends that own project-wide objects besides
// instances (Docker networks and volumes). Down removes them, and whatever
// instances an earlier, killed devstack left behind.
type Cleaner interface {
	Down(ctx context.Context, project string, removeVolumes bool) error
}

// Spec is everything a backend needs to start one service.
type Spec struct {
	Project *project.Project
	Service *project.Service
	// Env is the service's environment (KEY=VALUE), devstack's own
	// variables included.
	Env []string
	// Stdout and Stderr receive the instance's output.
	Stdout, Stderr io.Writer
	// Status receives devstack's own messages about the service (build
	// progress, signals sent).
	Status io.Writer
	// Marker is put in the environment as DEVSTACK_INSTANCE so that orphans
	// can be found after a crash of devstack.
	Marker string
	// Synced are the files hot reload syncs copied into the service's
	// earlier instances since its last build (the latest copy of each
	// path): a backend whose instances do not see the host's files
	// (Syncer) copies them into a new instance before it starts, so that
	// a restart keeps them, as a container restarted in place would.
	Synced []FileCopy
	// Ambassador, when set, asks a Networked backend to put an ambassador
	// in front of the service on its networks: a container that answers to
	// the service's name (and aliases) and relays every connection to the
	// proxy, so that calls by service name are traced hops too. Nil (the
	// default, and always for other backends) means none: the instance
	// itself answers to its name. Filled from Options.Ambassador.
	Ambassador *Ambassador
	// Ambassadors are the ambassadors of every service of the spec's
	// backend that gets one, by service name (the spec's own included),
	// so that the backend can serve them all from one helper, started once
	// ahead of the first start. Nil when none.
	Ambassadors map[string]*Ambassador
}

// Ambassador is where an ambassador relays a service's ports.
type Ambassador struct {
	// Relay maps a target port of the service (what callers use with its
	// name: http://orders:8080) to the proxy's address for it as
	// containers reach the host (<bridge gateway>:<declared port>). Target
	// ports not in the map are not fronted by the proxy; the ambassador
	// passes them straight to the container.
	Relay map[uint16]string
}

// Exit says how an instance ended.
type Exit struct {
	Code   int    // exit code; -1 when killed by a signal
	Signal string // the signal that ended it, if any, as Go describes it ("killed", "terminated")
	Err    error  // an error waiting on it (not a non-zero exit)
	At     time.Time
	// OOM says the kernel's OOM killer ended it, at its memory limit
	// MemLimit (bytes; 0 when it had none: the host ran out).
	OOM      bool
	MemLimit int64
}

func (e Exit) String() string {
	switch {
	case e.OOM:
		return oomText(e.MemLimit)
	case e.Err != nil:
		return e.Err.Error()
	case e.Signal != "":
		return "signal: " + e.Signal // as Go words it: "signal: killed"
	default:
		return fmt.Sprintf("exit code %d", e.Code)
	}
}

// Success reports a clean exit with code 0.
func (e Exit) Success() bool { return e.Err == nil && e.Signal == "" && e.Code == 0 }

// oomText says that the OOM killer ended an instance, and at what limit.
func oomText(limit int64) string {
	if limit <= 0 {
		return "killed: out of memory (OOM killer; no memory limit was set, the host ran out)"
	}
	return fmt.Sprintf("killed: out of memory (OOM killer) at its memory limit of %s; raise mem_limit if it needs more", memSize(limit))
}

func memSize(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", b>>30)
	case b >= 1<<20:
		return fmt.Sprintf("%d MiB", b>>20)
	}
	return fmt.Sprintf("%d bytes", b)
}

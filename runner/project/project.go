package project

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// Project is a loaded, validated devstack project: the Compose model plus
// devstack's own x-devstack settings, decoded and checked.
type Project struct {
	// Name is the Compose project name (from -p, the name: key, or the directory).
	Name string
	// Dir is the absolute project directory; relative paths resolve against it.
	Dir string
	// Files are the absolute paths of the compose files that were loaded.
	Files []string
	// Compose is the resolved Compose model, as compose-go produced it.
	Compose *types.Project
	// X holds the project-level x-devstack settings.
	X ProjectExt
	// Services are the enabled services, sorted by name.
	Services []*Service
	// Warnings are non-fatal findings (an unset variable, an ignored key)
	// that the CLI prints before acting.
	Warnings []string
}

// ProjectExt is the project-level x-devstack block.
type ProjectExt struct {
	// Backend is the default backend for services that do not choose one:
	// "process", "docker", or "" (auto: docker where the engine answers and
	// the service can run there, else process).
	Backend string `yaml:"backend,omitempty" json:"backend,omitempty"`
	// Workdir is the default workdir of process services, relative to the
	// project directory. A root devstack.yaml that includes a stack from a
	// subdirectory sets it, since include does not move x-devstack paths.
	Workdir string `yaml:"workdir,omitempty" json:"workdir,omitempty"`
	// Trace configures the tracing proxy.
	Trace TraceExt `yaml:"trace,omitempty" json:"trace,omitzero"`
	// Plugins declares external plugins, and may disable a built-in one.
	Plugins []PluginExt `yaml:"plugins,omitempty" json:"plugins,omitempty"`
	// Faults is the x-devstack.faults scenario as JSON (the fault plugin
	// reads it: header_trigger and rules).
	Faults json.RawMessage `yaml:"-" json:"faults,omitempty"`
	// Toxiproxy is the loopback port of the Toxiproxy-compatible API; 0
	// off.
	Toxiproxy int `yaml:"toxiproxy,omitempty" json:"toxiproxy,omitempty"`
}

// PluginExt is one entry of x-devstack.plugins.
type PluginExt struct {
	Name string `yaml:"name" json:"name"`
	// Path is an external plugin's executable, relative to the project
	// directory; empty for a built-in (listed to set its options or
	// disable it).
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// SHA256 is the hex sha256 the executable must have.
	SHA256 string `yaml:"sha256,omitempty" json:"sha256,omitempty"`
	// Options is passed to the plugin, as JSON.
	Options  json.RawMessage `yaml:"-" json:"options,omitempty"`
	Disabled bool            `yaml:"disabled,omitempty" json:"disabled,omitempty"`
}

// TraceExt is the project-level x-devstack.trace block.
type TraceExt struct {
	// Formats are the trace header formats the proxy writes, e.g.
	// "w3c,sentry,b3" (the default), "w3c", "w3c,b3multi", or "none".
	Formats string `yaml:"formats,omitempty" json:"formats,omitempty"`
	// Redact adds header names (or name fragments) whose values are not
	// recorded to the proxy's defaults (auth, cookie, token, secret, key,
	// pass, session, credential, jwt, signature, hmac, cert, csrf, xsrf);
	// "!name" takes a default out.
	Redact []string `yaml:"redact,omitempty" json:"redact,omitempty"`
	// RedactQuery adds query parameter names (or name parts) whose values
	// are not recorded, in recorded queries and URLs in header values, to
	// the proxy's rule (code, sig, and names containing token, secret,
	// key, pass, auth, signature, ...: see proxy.QueryRule); "!name"
	// records a default one.
	RedactQuery []string `yaml:"redact_query,omitempty" json:"redact_query,omitempty"`
	// MaxSpans bounds the spans kept (memory and disk); whole oldest traces
	// go first. Default 100000.
	MaxSpans int `yaml:"max_spans,omitempty" json:"max_spans,omitempty"`
	// Bodies records the first this many bytes of each HTTP/1.x request
	// and response body in its span. Default 0: off, since bodies can hold
	// credentials that header redaction does not see.
	Bodies int `yaml:"bodies,omitempty" json:"bodies,omitempty"`
	// Disabled turns the proxy off: services listen on their declared
	// ports themselves and nothing is traced.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
}

// Service is one enabled service.
type Service struct {
	Name string
	// Compose is the service as compose-go resolved it (environment merged,
	// env_file read, ports parsed, healthcheck durations parsed).
	Compose types.ServiceConfig
	// X is the service-level x-devstack block.
	X ServiceExt
	// Ports are the declared ports, validated.
	Ports []Port
	// DependsOn lists the service's dependencies, sorted by name.
	DependsOn []Dependency
}

// ServiceExt is the service-level x-devstack block. A service runs as a
// native process when Run is set.
type ServiceExt struct {
	// Run is the command line of the process. A YAML string runs through
	// /bin/sh -c; a YAML list runs directly (no shell).
	Run Command `yaml:"run,omitempty" json:"run,omitempty"`
	// Workdir is the process's working directory, relative to the project
	// directory. Default: the project directory.
	Workdir string `yaml:"workdir,omitempty" json:"workdir,omitempty"`
	// Build is a command run (in Workdir) before the first start and on
	// rebuild. A failing build fails the service's start.
	Build Command `yaml:"build,omitempty" json:"build,omitempty"`
	// PortEnv names the environment variable that tells the process which
	// port to listen on (e.g. PORT). Default: none.
	PortEnv string `yaml:"port_env,omitempty" json:"port_env,omitempty"`
	// Backend forces a backend for this service: "process" or "docker".
	Backend string `yaml:"backend,omitempty" json:"backend,omitempty"`
	// Protocol is how the proxy treats the service's ports: "auto" (the
	// default: detected per connection), "http" (HTTP/1.1, h2c, gRPC,
	// WebSocket) or "tcp" (opaque bytes, one span per connection). Use tcp
	// for a server-first protocol such as MySQL to skip detection's wait.
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	// PortProtocols is Protocol per port, by target port, when the file
	// gives protocol as a mapping from port to protocol (a service with an
	// HTTP port and a database port). Ports it leaves out are "auto".
	PortProtocols map[uint16]string `yaml:"port_protocols,omitempty" json:"port_protocols,omitempty"`
	// Ambassador says whether a container service gets an ambassador, the
	// small container that answers to its name so that calls to it by
	// name go through the proxy: "auto" (the default: when another
	// service's environment, command, healthcheck or links name it), "always" or
	// "never".
	Ambassador string `yaml:"ambassador,omitempty" json:"ambassador,omitempty"`
	// External says that the user runs the service (in an IDE, a
	// debugger): devstack does not start it, and the proxy keeps its
	// declared ports, forwarding to a private port where the user runs it
	// (`devstack env SERVICE` prints how). `devstack start` takes it back.
	External bool `yaml:"external,omitempty" json:"external,omitempty"`
}

// ProtocolOf returns how the proxy treats the service's port whose target
// port is target: "auto", "http" or "tcp" ("" means "auto").
func (x ServiceExt) ProtocolOf(target uint16) string {
	if p, ok := x.PortProtocols[target]; ok {
		return p
	}
	return x.Protocol
}

// Command is a command line. Shell is true when it was written as a single
// string, which runs as /bin/sh -c Args[0].
type Command struct {
	Args  []string `json:"args,omitempty"`
	Shell bool     `json:"shell,omitempty"`
}

// Empty reports whether no command was given.
func (c Command) Empty() bool { return len(c.Args) == 0 }

// Argv is the argv to execute.
func (c Command) Argv() []string {
	if c.Shell {
		return []string{"/bin/sh", "-c", c.Args[0]}
	}
	return c.Args
}

// Port is one declared port mapping.
type Port struct {
	// HostIP is the address to bind on the host; default 127.0.0.1.
	HostIP string
	// Published is the host port (0 when none was given).
	Published uint16
	// Target is the port the service listens on.
	Target uint16
	// Protocol is "tcp" or "udp".
	Protocol string
	// Range is the published range as written ("8000-8002"), or "".
	// Published is then its first port until PickPorts settles it.
	Range string `json:",omitempty"`
}

// PickPorts settles every published range ("8000-8002:80") on the first
// of its ports that free accepts (free, as the stack starts), as Compose
// picks one when it creates the container. A range with no free port is
// an error naming it.
func (p *Project) PickPorts(free func(hostIP string, port uint16) bool) error {
	for _, s := range p.Services {
		for i, pt := range s.Ports {
			if pt.Range == "" {
				continue
			}
			lo, hi, _ := strings.Cut(pt.Range, "-")
			l, _ := strconv.Atoi(lo)
			h, _ := strconv.Atoi(hi)
			picked := false
			for n := l; n <= h && !picked; n++ {
				if free(pt.HostIP, uint16(n)) {
					s.Ports[i].Published, picked = uint16(n), true
				}
			}
			if !picked {
				return fmt.Errorf("service %q: every port of the published range %s is in use; free one or widen the range", s.Name, pt.Range)
			}
		}
	}
	return nil
}

// Declared is the port users and other services call: the published port,
// else the target.
func (p Port) Declared() uint16 {
	if p.Published != 0 {
		return p.Published
	}
	return p.Target
}

// Dependency is one depends_on entry.
type Dependency struct {
	Service string
	// Condition is service_started, service_healthy or
	// service_completed_successfully.
	Condition string
	// Required false means the dependent may start without it.
	Required bool
	// Restart true means restarting the dependency restarts the dependent.
	Restart bool
}

// Condition values of depends_on.
const (
	ConditionStarted   = "service_started"
	ConditionHealthy   = "service_healthy"
	ConditionCompleted = "service_completed_successfully"
)

// Healthcheck is the resolved healthcheck for a service, nil when none is
// declared or it is disabled (NONE / disable: true).
type Healthcheck struct {
	// Test is the command; Shell is true for CMD-SHELL.
	Test          Command
	Interval      time.Duration // default 30s
	Timeout       time.Duration // default 30s
	Retries       int           // default 3
	StartPeriod   time.Duration // default 0
	StartInterval time.Duration // default 5s
}

// LoadOptions say which files to load and how, mirroring docker compose's
// global flags.
type LoadOptions struct {
	// Files are the -f paths, in order, relative to WorkDir. Empty means:
	// the files in COMPOSE_FILE if set, else the first of devstack.yaml,
	// devstack.yml, compose.yaml, compose.yml, docker-compose.yml,
	// docker-compose.yaml in WorkDir, plus its override file
	// (devstack.override.yaml, compose.override.yaml, ...) as compose does.
	Files []string
	// WorkDir is where to look for files; default the current directory.
	WorkDir string
	// Name is -p; empty means the name: key or the directory name.
	Name string
	// Profiles are the --profile values.
	Profiles []string
	// EnvFiles are the --env-file values, relative to WorkDir; empty means
	// .env in the project directory if present (as compose: the directory
	// of the first -f file, which is WorkDir when files are discovered).
	// COMPOSE_DISABLE_ENV_FILE in Env turns the default off.
	EnvFiles []string
	// Services, when non-empty, keeps these services and what they depend on.
	Services []string
	// Env is the environment for interpolation; nil means os.Environ().
	Env []string
}

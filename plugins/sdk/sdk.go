package sdk

import (
	"context"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/devstack/devstack/proxy/fault"
)

// ProtocolVersion is the plugin protocol's version. devstack refuses a
// plugin built for another one, naming both.
const ProtocolVersion = 1

// Handshake is the go-plugin handshake devstack and its plugins share. The
// cookie only keeps a plugin binary from being run by hand by mistake; it
// is not a security measure (SecureConfig's checksum is).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "DEVSTACK_PLUGIN",
	MagicCookieValue: "a plugin of devstack; run it through devstack, not by hand",
}

// PluginName is the name under which the plugin's gRPC service is
// dispensed.
const PluginName = "devstack"

// Info names a plugin.
type Info struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Port is one port of a service as the proxy routes it.
type Port struct {
	// Listen is the address the proxy owns ("127.0.0.1:18082").
	Listen string `json:"listen"`
	// Upstream is where the service really listens ("127.0.0.1:40123").
	Upstream string `json:"upstream,omitempty"`
	// Protocol is "auto", "http" or "tcp".
	Protocol string `json:"protocol,omitempty"`
}

// Service is one service of the stack.
type Service struct {
	Name  string `json:"name"`
	Ports []Port `json:"ports,omitempty"`
}

// RuleSet is every fault rule a plugin wants applied; each push replaces
// the plugin's previous set whole.
type RuleSet struct {
	Rules []fault.Rule `json:"rules"`
	// HeaderTrigger lets requests ask for faults with X-Devstack-Fault.
	HeaderTrigger bool `json:"header_trigger,omitempty"`
}

// Config is what a plugin starts with.
type Config struct {
	// Project is the project's name.
	Project  string
	Services []Service
	// Options is the plugin's configuration as JSON (for the fault plugin,
	// the project's x-devstack.faults and toxiproxy keys); nil if none.
	Options []byte
	// Rules is the rule set the plugin pushed last, when devstack restarts
	// it after a crash: the plugin carries on from there.
	Rules RuleSet
	// Restarted is set when this is not the plugin's first start.
	Restarted bool
}

// Event is one runner event: a service starting, ready, exiting, ...
type Event struct {
	Service string
	// Kind is what happened ("starting", "running", "healthy", "exited",
	// "stopped", ...).
	Kind    string
	Message string
	Time    time.Time
	// Intent is "coming back" when the service stops or restarts to be
	// replaced (a hot reload, a restart on request): a plugin should not
	// take it for down. Empty otherwise.
	Intent string
	// Cause is what the change is for ("main.go changed"), if known.
	Cause string
}

// ActionKind is what a plugin may ask the runner to do.
type ActionKind string

const (
	// Restart replaces the services' instances with new ones (started
	// beside the old where the proxy fronts their ports: no request
	// fails).
	Restart ActionKind = "restart"
	// Rebuild builds the services, then restarts them as Restart does;
	// a failed build leaves the running instances serving.
	Rebuild ActionKind = "rebuild"
	// Sync copies Files into the services (into a container through the
	// engine).
	Sync ActionKind = "sync"
	// Exec copies Files into the services as Sync does (if any), then
	// runs each of Exec in them, in order: in a container through the
	// engine, for a process in its workdir and environment. A sync+exec
	// rule of develop.watch.
	Exec ActionKind = "exec"
)

// Command is one command an Exec runs in a service.
type Command struct {
	Command []string
	// WorkingDir is where it runs; "" is the service's own workdir.
	WorkingDir string
	// Env is KEY=VALUE added to the service's environment.
	Env []string
	// User runs it as this user in a container; "" is the container's.
	User string
}

// FileCopy is one file a Sync copies: Src on the host to Dst in the
// service; Removed removes Dst instead.
type FileCopy struct {
	Src, Dst string
	Removed  bool
}

// Action is a plugin's request to the runner.
type Action struct {
	Kind     ActionKind
	Services []string
	// Reason is shown in the log ("payments/main.go changed").
	Reason string
	// Seen is when the change that asked for the action was seen; a hot
	// reload's time is measured from it. Zero: when devstack gets it.
	Seen time.Time
	// Files are what a Sync (or an Exec, first) copies.
	Files []FileCopy
	// Exec are what an Exec runs.
	Exec []Command
}

// Host is what a running plugin can ask of devstack.
type Host interface {
	// PushRules replaces the plugin's fault rules. It returns once the
	// proxy applies them (from its next request on), or with devstack's
	// reason for refusing them; so whatever the plugin answers after it
	// is already true of the traffic.
	PushRules(RuleSet) error
	// Act asks the runner for an action. It returns once devstack has
	// taken the request, not when the action is done.
	Act(Action) error
}

// Plugin is what every plugin implements.
type Plugin interface {
	Info() Info
	// Start sets the plugin up once its process runs (again in each new
	// process after a restart) and returns; commands and events come only
	// after it returned. host stays valid, and ctx lives, until devstack
	// stops the plugin: work that lasts runs in goroutines that end with
	// ctx. An error fails the start, and devstack restarts the plugin.
	Start(ctx context.Context, cfg Config, host Host) error
}

// EventHandler is implemented by plugins that want runner events. Events
// arrive one at a time, in order; a slow handler delays the next ones, not
// the stack.
type EventHandler interface {
	HandleEvent(ctx context.Context, ev Event)
}

// Commander is implemented by plugins with commands (the fault plugin's
// add, ls, rm, clear, apply). args and the result are JSON. An error is
// shown to the user as it is: make it say what to do.
type Commander interface {
	Command(ctx context.Context, name string, args []byte) ([]byte, error)
}

// Serve runs p as a plugin process, speaking to the devstack that started
// it. It returns when devstack stops the plugin.
func Serve(p Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &grpcPlugin{impl: p}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// PluginSet is the go-plugin plugin set for a host (impl nil) or for a
// plugin served in-process by tests (plugin.TestPluginGRPCConn).
func PluginSet(impl Plugin) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &grpcPlugin{impl: impl}}
}

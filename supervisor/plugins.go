package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/plugins/host"
	"github.com/devstack/devstack/plugins/reload"
	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/proxy/fault"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/logstore"
	"github.com/devstack/devstack/runner/project"
)

// FaultPlugin is the built-in fault injection plugin's name.
const FaultPlugin = "faultinject"

// builtinPlugins are the plugins inside the devstack binary, run unless
// x-devstack.plugins disables them.
var builtinPlugins = []string{FaultPlugin, ReloadPlugin}

// ReloadPlugin is the built-in hot reload plugin's name. It runs when a
// service has a develop.watch section, and watches once asked to (up
// --watch, devstack watch).
const ReloadPlugin = reload.Name

// pluginSpecs turns the project's x-devstack.plugins (and the built-ins)
// into host specs, checking x-devstack.faults first so a bad scenario
// fails `up` before anything starts, naming the file.
func pluginSpecs(p *project.Project, builtin bool, backendFor func(*project.Service) (runner.Backend, error), checkPort bool) ([]host.Spec, error) {
	if len(p.X.Faults) > 0 {
		var sc fault.Scenario
		if err := fault.DecodeScenario(p.X.Faults, &sc); err != nil {
			return nil, fmt.Errorf("%s: x-devstack.faults: %w", primaryFile(p), err)
		}
	}
	declared := map[string]project.PluginExt{}
	for _, pe := range p.X.Plugins {
		declared[pe.Name] = pe
	}
	var specs []host.Spec
	if builtin {
		for _, name := range builtinPlugins {
			pe := declared[name]
			if pe.Disabled || pe.Path != "" {
				continue
			}
			opts := pe.Options
			if name == ReloadPlugin {
				ro := ReloadOptions(p, backendFor, false)
				if len(ro.Rules) == 0 {
					continue // nothing to watch
				}
				b, err := json.Marshal(ro)
				if err != nil {
					return nil, err
				}
				opts = b
			}
			if name == FaultPlugin {
				b, err := json.Marshal(map[string]any{"faults": json.RawMessage(orNull(p.X.Faults)), "toxiproxy": p.X.Toxiproxy})
				if err != nil {
					return nil, err
				}
				opts = b
			}
			specs = append(specs, host.Spec{Name: name, Options: opts})
		}
	}
	for _, pe := range p.X.Plugins {
		if pe.Disabled || pe.Path == "" {
			continue
		}
		path := pe.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(p.Dir, path)
		}
		specs = append(specs, host.Spec{Name: pe.Name, Path: path, SHA256: pe.SHA256, Options: pe.Options})
	}
	for _, pe := range p.X.Plugins {
		if pe.Path == "" && !isBuiltin(pe.Name) {
			return nil, fmt.Errorf("%s: x-devstack.plugins: %q is not a built-in plugin (%s); give the path of its executable", primaryFile(p), pe.Name, builtinPlugins)
		}
	}
	if err := host.Check(specs); err != nil {
		return nil, fmt.Errorf("%s: x-devstack.plugins: %w", primaryFile(p), err)
	}
	if port := p.X.Toxiproxy; port > 0 && builtin && checkPort {
		// The fault plugin listens there; a taken port is said now, not
		// as a plugin that keeps failing to start.
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("%s: x-devstack.toxiproxy: port %d on 127.0.0.1 is taken (%v); stop what listens there (a Toxiproxy server?) or choose another port", primaryFile(p), port, err)
		}
		l.Close()
	}
	return specs, nil
}

func isBuiltin(name string) bool {
	for _, b := range builtinPlugins {
		if b == name {
			return true
		}
	}
	return false
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

func primaryFile(p *project.Project) string {
	if len(p.Files) > 0 {
		return filepath.Base(p.Files[0])
	}
	return "the project file"
}

// newPluginHost makes the host and starts its plugins in the background;
// Up waits for them, so the file's faults are in force before the first
// service starts.
func (s *Supervisor) newPluginHost(specs []host.Spec, routes []proxy.Route) {
	s.pluginsReady = make(chan struct{})
	if len(specs) == 0 {
		close(s.pluginsReady)
		return
	}
	services := pluginServices(s.opts.Project, routes)
	s.plugins = host.New(host.Options{
		Project:  s.opts.Project.Name,
		Services: func() []sdk.Service { return services },
		Builtin:  s.opts.Builtin,
		Faults:   s.faults,
		Act:      s.pluginAction,
		Log:      s.logs.Writer("devstack", logstore.System),
	})
	go func() {
		defer close(s.pluginsReady)
		if err := s.plugins.Start(context.Background(), specs); err != nil {
			s.emit(eventf("plugins: %v", err))
		}
	}()
}

// waitPlugins waits until every plugin started (or failed to).
func (s *Supervisor) waitPlugins(ctx context.Context) error {
	if s.pluginsReady == nil {
		return nil
	}
	select {
	case <-s.pluginsReady:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func pluginServices(p *project.Project, routes []proxy.Route) []sdk.Service {
	byName := map[string]*sdk.Service{}
	var out []sdk.Service
	for _, svc := range p.Services {
		out = append(out, sdk.Service{Name: svc.Name})
	}
	for i := range out {
		byName[out[i].Name] = &out[i]
	}
	for _, r := range routes {
		if svc := byName[r.Service]; svc != nil {
			svc.Ports = append(svc.Ports, sdk.Port{Listen: r.Listen, Upstream: r.Upstream, Protocol: r.Protocol})
		}
	}
	return out
}

// pluginAction carries out a plugin's request.
func (s *Supervisor) pluginAction(plugin string, a sdk.Action) error {
	if plugin == ReloadPlugin || a.Kind == sdk.Rebuild || a.Kind == sdk.Sync || a.Kind == sdk.Exec {
		return s.reloadAction(plugin, a)
	}
	switch a.Kind {
	case sdk.Restart:
		s.emit(eventf("plugin %s restarts %v: %s", plugin, a.Services, a.Reason))
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := (stack{s}).Restart(ctx, a.Services, runner.StopOptions{}); err != nil {
				s.emit(eventf("plugin %s: restarting %v: %v", plugin, a.Services, err))
			}
		}()
		return nil
	}
	return fmt.Errorf("action %q is not supported by this devstack (restart is)", a.Kind)
}

// pluginEvent hands a runner event to the plugins.
func (s *Supervisor) pluginEvent(service, msg string) {
	if s.plugins != nil {
		s.plugins.Event(sdk.Event{Service: service, Kind: "progress", Message: msg, Time: time.Now()})
	}
}

// pluginAPI is the control API's view of the plugin host.
type pluginAPI struct{ s *Supervisor }

func (a pluginAPI) Status() []control.PluginStatus {
	if a.s.plugins == nil {
		return nil
	}
	var out []control.PluginStatus
	for _, st := range a.s.plugins.Status() {
		out = append(out, control.PluginStatus{Name: st.Name, Version: st.Version, State: string(st.State), Builtin: st.Builtin,
			Path: st.Path, Pid: st.Pid, Restarts: st.Restarts, Rules: st.Rules, LastError: st.LastError})
	}
	return out
}

func (a pluginAPI) Command(ctx context.Context, plugin, name string, args []byte) ([]byte, error) {
	if a.s.plugins == nil {
		return nil, &control.PluginError{Unavailable: true, Msg: "this devstack runs no plugins"}
	}
	out, err := a.s.plugins.Command(ctx, plugin, name, args)
	var ce *sdk.CommandError
	switch {
	case errors.As(err, &ce):
		return nil, &control.PluginError{Msg: ce.Msg}
	case errors.Is(err, host.ErrNoPlugin):
		return nil, &control.PluginError{Unavailable: true, Msg: err.Error()}
	case err != nil:
		return nil, &control.PluginError{Unavailable: true, Msg: fmt.Sprintf("plugin %s: %v", plugin, err)}
	}
	var w struct{ On bool }
	if plugin == ReloadPlugin && name == "watch" && json.Unmarshal(args, &w) == nil && w.On {
		a.s.watchStarted() // `watch` and `up -d --watch` through the API
	}
	return out, nil
}

// Faults is the fault table the plugins fill and the proxy reads.
func (s *Supervisor) Faults() *fault.Table { return s.faults }

// BuiltinCommand runs built-in plugin name by re-executing this binary as
// `devstack plugin NAME`.
func BuiltinCommand(exe string) func(name string) (*exec.Cmd, error) {
	return func(name string) (*exec.Cmd, error) { return exec.Command(exe, "plugin", name), nil }
}

func eventf(format string, args ...any) runner.Event {
	return runner.Event{Msg: fmt.Sprintf(format, args...)}
}

package supervisor

import (
	"context"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devstack/devstack/plugins/reload"
	"github.com/devstack/devstack/plugins/reload/watch"
	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// portTable is the proxy's routes and the private ports behind them. A
// hot reload moves a service to fresh private ports (its new instance
// listens there while the old one still serves the old ones), so the
// table changes over the supervisor's life; restarts keep what it says.
type portTable struct {
	project string
	proxy   *proxy.Server

	mu      sync.Mutex
	private map[portKey]uint16
	routes  []proxy.Route
	keys    []portKey // keys[i] is the service port routes[i] fronts
	// held are the services whose routes the proxy listens on: those
	// started so far (hold), so that `up web` leaves the ports of the
	// services it does not start to the user.
	held map[string]bool
}

func newPortTable(project string, private map[portKey]uint16, routes []proxy.Route) *portTable {
	t := &portTable{project: project, private: private, routes: routes, held: map[string]bool{}}
	for _, r := range routes {
		t.keys = append(t.keys, keyOf(private, r))
	}
	return t
}

// keyOf finds the service port whose private port r forwards to.
func keyOf(private map[portKey]uint16, r proxy.Route) portKey {
	_, ps, _ := net.SplitHostPort(r.Upstream)
	port, _ := strconv.Atoi(ps)
	for k, pp := range private {
		if k.service == r.Service && int(pp) == port {
			return k
		}
	}
	return portKey{}
}

// listenPort is runner.Options.ListenPort.
func (t *portTable) listenPort(service string, port project.Port) uint16 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pp, ok := t.private[portKey{service, port.Target}]; ok {
		return pp
	}
	return port.Declared()
}

// FreshPorts implements runner.Rerouter: for each port of service the
// proxy fronts, a free private port other than every one in the table.
func (t *portTable) FreshPorts(service string) (map[uint16]uint16, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	taken := map[uint16]bool{}
	for _, pp := range t.private {
		taken[pp] = true
	}
	for _, r := range t.routes {
		_, ps, _ := net.SplitHostPort(r.Listen)
		if p, err := strconv.Atoi(ps); err == nil {
			taken[uint16(p)] = true
		}
	}
	out := map[uint16]uint16{}
	for k := range t.private {
		if k.service != service {
			continue
		}
		pp, err := privatePort(t.project, service, k.target, taken)
		if err != nil {
			return nil, err
		}
		taken[pp] = true
		out[k.target] = pp
	}
	return out, nil
}

// Switch implements runner.Rerouter: the routes of service go to ports
// from now on, switched in place (the proxy keeps its listeners and
// client connections; each follows the new upstream at its next request).
func (t *portTable) Switch(service string, ports map[uint16]uint16) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	routes := make([]proxy.Route, len(t.routes))
	copy(routes, t.routes)
	for i, k := range t.keys {
		if pp, ok := ports[k.target]; ok && k.service == service {
			routes[i].Upstream = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(pp)))
		}
	}
	if t.proxy != nil {
		if err := t.proxy.SetRoutes(t.heldOf(routes)); err != nil {
			return err
		}
	}
	t.routes = routes
	for target, pp := range ports {
		k := portKey{service, target}
		if _, ok := t.private[k]; ok {
			t.private[k] = pp
		}
	}
	return nil
}

// Drain implements runner.Rerouter: it waits until the proxy has answered
// every request to service that began before since.
func (t *portTable) Drain(ctx context.Context, service string, since time.Time) {
	if t.proxy == nil {
		return
	}
	wait := time.Millisecond
	for t.proxy.InFlightBefore(service, since) > 0 {
		tm := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			tm.Stop()
			return
		case <-tm.C:
		}
		wait = min(wait*2, 20*time.Millisecond)
	}
}

// Reload hot-reloads a service (see runner.Runner.Replace). The proxy
// holds the service's requests, rather than answering that it is down,
// for as long as the reload runs.
func (s *Supervisor) Reload(ctx context.Context, service string, o runner.ReplaceOptions) (runner.Reload, error) {
	s.restarting.Add(1)
	defer func() {
		s.restarting.Add(-1)
		s.tellProxyWhatIsDown()
	}()
	return s.run.Replace(ctx, service, o)
}

// ReloadOptions turns the services' develop.watch sections into the
// reload plugin's options. Paths are made absolute against the project's
// directory; a process's sync target is taken inside its workdir (a
// leading / included: /app/static is <workdir>/app/static), so a sync
// never writes outside it; so is a sync+exec's working_dir.
func ReloadOptions(p *project.Project, backendFor func(*project.Service) (runner.Backend, error), watchNow bool) reload.Options {
	o := reload.Options{Root: p.Dir, Watch: watchNow, Services: map[string]reload.Service{}}
	for _, svc := range p.Services {
		d := svc.Compose.Develop
		if d == nil || len(d.Watch) == 0 {
			continue
		}
		container := false
		if b, err := backendFor(svc); err == nil {
			_, container = b.(runner.Networked)
		}
		wd := processWorkdir(p, svc)
		o.Services[svc.Name] = reload.Service{Container: container}
		for _, w := range d.Watch {
			r := watch.Rule{Service: svc.Name, Path: w.Path, Action: string(w.Action), Target: w.Target,
				Ignore: w.Ignore, Include: w.Include, InitialSync: w.InitialSync,
				Exec: w.Exec.Command, ExecDir: w.Exec.WorkingDir, ExecUser: w.Exec.User}
			// A container's image ignores what .dockerignore says; an image
			// made of what the host builds (x-devstack.build, run before a
			// rebuild) does not see the sources that build reads, so they
			// count.
			r.DockerIgnore = container && svc.X.Build.Empty()
			for _, k := range slices.Sorted(maps.Keys(w.Exec.Environment)) {
				if v := w.Exec.Environment[k]; v != nil {
					r.ExecEnv = append(r.ExecEnv, k+"="+*v)
				}
			}
			if !filepath.IsAbs(r.Path) {
				r.Path = filepath.Join(p.Dir, r.Path)
			}
			if !container && r.Target != "" {
				r.Target = filepath.Join(wd, strings.TrimPrefix(r.Target, "/"))
			}
			if !container && r.ExecDir != "" {
				r.ExecDir = filepath.Join(wd, strings.TrimPrefix(r.ExecDir, "/"))
			}
			o.Rules = append(o.Rules, r)
		}
	}
	return o
}

// processWorkdir is where a process service runs (as runner/process
// decides it).
func processWorkdir(p *project.Project, svc *project.Service) string {
	wd := svc.X.Workdir
	if wd == "" {
		wd = p.X.Workdir
	}
	if wd == "" {
		return p.Dir
	}
	if filepath.IsAbs(wd) {
		return wd
	}
	return filepath.Join(p.Dir, wd)
}

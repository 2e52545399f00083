package docker

import (
	"slices"
	"strconv"
	"strings"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// Wire adapts a spec the runner built as for a process on the host to a
// container (runner.Networked): the container publishes each port the
// proxy fronts on the private port, on loopback, instead of the declared
// one (see remapped), and its environment names other services by
// addresses that reach them from inside (see containerEnv).
func (b *Backend) Wire(spec runner.Spec, st runner.Stack) runner.Spec {
	spec.Service = remapped(spec.Service, st)
	spec.Env = containerEnv(spec.Project, b, st, spec.Env)
	return spec
}

// Lasting reports that containers outlive the supervisor that started
// them (runner.Lasting): the engine runs them.
func (b *Backend) Lasting() bool { return true }

// remapped returns the service as the container must publish it: when the
// proxy owns a declared port, on the private port instead, on loopback.
func remapped(ps *project.Service, st runner.Stack) *project.Service {
	var ports []project.Port
	for i, p := range ps.Ports {
		lp := st.ListenPort(ps.Name, p)
		if lp == p.Declared() {
			continue
		}
		if ports == nil {
			ports = slices.Clone(ps.Ports)
		}
		ports[i].Published, ports[i].HostIP = lp, "127.0.0.1"
	}
	if ports == nil {
		return ps
	}
	c := *ps
	c.Ports = ports
	return &c
}

// containerEnv rewrites, in a container's environment, the loopback
// addresses of other services to addresses that reach them from inside
// the container. One file then serves both backends: services are written
// as calling each other at localhost:<published port>, which is right for
// processes, and a container's "localhost" is itself.
//
//	localhost:18082 (a process, or a container behind the proxy) → host.docker.internal:18082
//	localhost:18082 (a container the proxy does not front)       → orders:<target port>
//
// Through host.docker.internal the call reaches the proxy (which also
// listens on the host's bridge address), so a container's calls are hops
// that are traced like any other. Only host:port pairs naming a declared
// port of a service are touched. A service this backend runs is on the
// container's networks, under its name.
func containerEnv(proj *project.Project, b *Backend, st runner.Stack, env []string) []string {
	repl := map[string]string{}
	for _, ps := range proj.Services {
		onNetwork := st.Backend(ps.Name) == runner.Backend(b)
		for _, p := range ps.Ports {
			port := strconv.Itoa(int(p.Declared()))
			to := "host.docker.internal:" + port
			proxied := st.ListenPort(ps.Name, p) != p.Declared()
			if onNetwork && !proxied {
				to = ps.Name + ":" + strconv.Itoa(int(p.Target))
			}
			for _, host := range []string{"localhost:", "127.0.0.1:"} {
				repl[host+port] = to
			}
		}
	}
	if len(repl) == 0 {
		return env
	}
	out := make([]string, len(env))
	for i, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DEVSTACK_") {
			out[i] = kv
			continue
		}
		out[i] = k + "=" + replaceAddrs(repl, v)
	}
	return out
}

// replaceAddrs replaces each whole host:port found in repl (so that
// localhost:1808 never matches within localhost:18082).
func replaceAddrs(repl map[string]string, v string) string {
	if !strings.Contains(v, "localhost:") && !strings.Contains(v, "127.0.0.1:") {
		return v
	}
	var b strings.Builder
	// Split at address starts so each candidate is replaced on its own.
	for len(v) > 0 {
		i := indexAddr(v)
		if i < 0 {
			b.WriteString(v)
			break
		}
		b.WriteString(v[:i])
		v = v[i:]
		j := strings.IndexByte(v, ':') + 1
		for j < len(v) && v[j] >= '0' && v[j] <= '9' {
			j++
		}
		if to, ok := repl[v[:j]]; ok {
			b.WriteString(to)
		} else {
			b.WriteString(v[:j])
		}
		v = v[j:]
	}
	return b.String()
}

func indexAddr(v string) int {
	i, j := strings.Index(v, "localhost:"), strings.Index(v, "127.0.0.1:")
	switch {
	case i < 0:
		return j
	case j < 0:
		return i
	}
	return min(i, j)
}

// What the runner and the supervisor ask of a container backend.
var (
	_ runner.Networked = (*Backend)(nil)
	_ runner.Lasting   = (*Backend)(nil)
)

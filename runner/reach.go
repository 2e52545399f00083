package runner

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/devstack/devstack/runner/project"
)

// How a service reaches the others, whatever their backends. A file is
// written for one world: containers call each other by name
// (http://fraud:8080), processes at localhost:<published port>. devstack
// makes both work from either side, with no change to the file and no
// root: each backend says, for every declared port of every service, at
// which address its instances reach that port (Reacher), and which
// addresses a file may write for it. The runner rewrites those in the
// service's environment and adds DEVSTACK_URL_<SERVICE> for each
// dependency. Wherever the proxy fronts the port, the address is the
// proxy's, so every such call is a traced hop.
//
// Only whole host:port pairs in environment values are rewritten: a name
// built at run time from parts (host and port in separate variables, or
// a URL without its port) cannot be, and reaches the service directly,
// or not at all from a process (a host cannot resolve container names).

// PeerPort is one declared port of a service, as another service's
// backend needs to know it to reach it.
type PeerPort struct {
	// Service is the service's name; Aliases are its other names on its
	// networks (Compose networks.<net>.aliases).
	Service string
	Aliases []string
	// Target is the port it listens on in its own network namespace:
	// the one callers use with its name (http://fraud:8080).
	Target uint16
	// Declared is the port callers on the host use: the published one,
	// else the target. HostIP is the address it is bound on ("" means
	// 127.0.0.1). Published says whether the file gave a host port.
	Declared  uint16
	HostIP    string
	Published bool
	// Proxied says the proxy owns Declared and forwards to the service.
	Proxied bool
	// Backend runs the service. A Networked one's instances answer to
	// their names on its networks, and have no address on the host
	// without a fixed host port.
	Backend Backend
}

// Reacher is implemented by backends whose instances reach other services
// at addresses of their own. Reach says at which address (host:port) an
// instance of this backend reaches port p, and the addresses that a file
// may write for it, which the runner rewrites to that one in the service's
// environment. ok is false when p cannot be reached from this backend at
// a known address (a container port with no fixed host port, from a host
// process).
type Reacher interface {
	Reach(p PeerPort) (addr string, written []string, ok bool)
}

// peerPorts lists every declared TCP port of every service.
func (r *Runner) peerPorts() []PeerPort {
	var out []PeerPort
	for _, ps := range r.p.Services {
		var b Backend
		if other := r.svcs[ps.Name]; other != nil {
			b = other.backend
		}
		for _, p := range ps.Ports {
			if p.Protocol == "udp" {
				continue
			}
			out = append(out, PeerPort{
				Service: ps.Name, Aliases: aliases(ps), Target: p.Target,
				Declared: p.Declared(), HostIP: p.HostIP, Published: p.Published != 0,
				Proxied: r.listenPort(ps.Name, p) != p.Declared(),
				Backend: b,
			})
		}
	}
	return out
}

// aliases are the names ps answers to on its networks besides its own.
func aliases(ps *project.Service) []string {
	var out []string
	for _, n := range ps.Compose.Networks {
		if n != nil {
			out = append(out, n.Aliases...)
		}
	}
	return out
}

// reachEnv rewrites, in env of service s whose backend is rc, every
// address a file may write for a service's port to the address rc's
// instances reach it at, and adds the discovery variables (urlVars).
func (r *Runner) reachEnv(s *service, rc Reacher, env []string) []string {
	repl := map[string]string{}
	for _, pp := range r.peerPorts() {
		addr, written, ok := rc.Reach(pp)
		if !ok {
			continue
		}
		for _, w := range written {
			if w != addr {
				repl[w] = addr
			}
		}
	}
	out := make([]string, 0, len(env)+2*len(s.spec.DependsOn))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DEVSTACK_") {
			out = append(out, kv)
			continue
		}
		out = append(out, k+"="+RewriteAddrs(repl, v))
	}
	return append(out, r.urlVars(s, rc)...)
}

// urlVars are the discovery variables of s, as .NET Aspire gives them:
// for each service s depends on, the address of its first TCP port as
// s's backend reaches it, DEVSTACK_ADDR_<NAME>=host:port and
// DEVSTACK_URL_<NAME>=http://host:port, NAME in upper case with every
// character but letters and digits made _. New code then needs no
// address in the file at all. A dependency without a port, or with none
// that s's backend reaches, gets none.
func (r *Runner) urlVars(s *service, rc Reacher) []string {
	ports := r.peerPorts()
	var out []string
	for _, d := range s.spec.DependsOn {
		i := slices.IndexFunc(ports, func(p PeerPort) bool { return p.Service == d.Service })
		if i < 0 {
			continue
		}
		addr, _, ok := rc.Reach(ports[i])
		if !ok {
			continue
		}
		name := EnvName(d.Service)
		out = append(out, "DEVSTACK_ADDR_"+name+"="+addr, "DEVSTACK_URL_"+name+"=http://"+addr)
	}
	return out
}

// EnvName is a service name as it appears in a variable's name: upper
// case, with every character but ASCII letters and digits made _.
func EnvName(service string) string {
	b := []byte(strings.ToUpper(service))
	for i, c := range b {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// RewriteAddrs replaces, in v, each whole host:port found in repl: the
// host is the longest run of host name characters before the colon and
// the port every digit after it, so that fraud:8080 is never found in
// antifraud:8080 or fraud:80800, and user:pass@fraud:8080 finds
// fraud:8080.
func RewriteAddrs(repl map[string]string, v string) string {
	if len(repl) == 0 || !strings.Contains(v, ":") {
		return v
	}
	var b strings.Builder
	done := 0 // v[:done] is written
	for i := 0; i < len(v); i++ {
		if v[i] != ':' {
			continue
		}
		start := i
		for start > done && isHostByte(v[start-1]) {
			start--
		}
		end := i + 1
		for end < len(v) && v[end] >= '0' && v[end] <= '9' {
			end++
		}
		if start == i || end == i+1 {
			continue
		}
		to, ok := repl[v[start:end]]
		if !ok {
			continue
		}
		b.WriteString(v[done:start])
		b.WriteString(to)
		done = end
		i = end - 1
	}
	if done == 0 {
		return v
	}
	b.WriteString(v[done:])
	return b.String()
}

func isHostByte(c byte) bool {
	return c == '.' || c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// hostAddr is the address on the host of a port bound on hostIP.
func hostAddr(hostIP string, port uint16) string {
	ip := hostIP
	switch ip {
	case "", "0.0.0.0", "::":
		ip = "127.0.0.1"
	}
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return ip + ":" + strconv.Itoa(int(port))
}

// HostReacher is the view from a host process: every port with a host
// side is at its bind address (127.0.0.1 by default) and its declared
// port, where the proxy listens when it fronts it; a file that calls a
// service by name (fraud:8080, the Compose way) means that address, since
// the host cannot resolve the project's container names. The process
// backend uses it, and so does `devstack env` for a service the user runs.
func HostReacher(p PeerPort) (addr string, written []string, ok bool) {
	if _, networked := p.Backend.(Networked); networked && !p.Published {
		return "", nil, false
	}
	addr = hostAddr(p.HostIP, p.Declared)
	port := ":" + strconv.Itoa(int(p.Target))
	for _, name := range append([]string{p.Service}, p.Aliases...) {
		written = append(written, name+port)
	}
	return addr, written, true
}

// Fronter is implemented by backends whose instances resolve service
// names on networks of their own (Docker). Front makes a service of
// another backend (a process on the host) answer to its name there,
// relaying the ports in spec.Ambassador to the proxy, so that those
// instances call it by name, and through the proxy. The runner calls it
// before the service's start, for services the supervisor gives an
// ambassador (Options.Ambassador); what it makes goes with the backend's
// Cleaner.
type Fronter interface {
	Front(ctx context.Context, spec Spec) error
}

// front has every other backend of the stack that can make s answer to
// its name (Fronter) do so, if the supervisor gives s an ambassador; its
// own backend too when s runs outside devstack (external). A failure is
// reported, not fatal: only calls to s by name from those backends'
// instances fail.
func (r *Runner) front(ctx context.Context, s *service, spec Spec, external bool) {
	if r.opts.Ambassador == nil {
		return
	}
	var fronters []Backend
	for _, ps := range r.p.Services {
		b := r.svcs[ps.Name].backend
		if _, ok := b.(Fronter); ok && (b != s.backend || external) && !slices.Contains(fronters, b) {
			fronters = append(fronters, b)
		}
	}
	if len(fronters) == 0 {
		return
	}
	amb := r.opts.Ambassador(s.spec.Name)
	if amb == nil {
		return
	}
	spec.Ambassador = amb
	for _, b := range fronters {
		if err := b.(Fronter).Front(ctx, spec); err != nil && ctx.Err() == nil {
			r.event(s.spec.Name, "%s instances cannot call %s by name: %v", b.Name(), s.spec.Name, err)
		}
	}
}

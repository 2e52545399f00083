package supervisor

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/proc"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/trace"
)

// portKey names one declared port of one service.
type portKey struct {
	service string
	target  uint16
}

// plan decides which ports the proxy fronts: every declared TCP port of a
// service that can be told where to listen (x-devstack.port_env). Each
// gets a private port on 127.0.0.1 that the service listens on instead;
// the proxy owns the declared port. Private ports stay the same for the
// supervisor's life, so a restart needs no change to the routing table.
//
// Services in a network of their own (containers: networked reports them)
// publish on the private port instead of the declared one, so the same
// holds for them; only ports they publish on a fixed host port are fronted
// (an ephemeral one has no address for callers to know).
// held, when not nil, gives the host port that a running container of the
// project already publishes for a service's target port: a supervisor
// that takes over running containers (after a crash of devstack, or a
// handover) keeps their private ports, so their config hash, rather than
// finding the port taken and recreating them on another.
//
// A service the user runs (x-devstack.external, or named in external) is
// fronted whatever it declares: the user is told where to listen
// (`devstack env`).
func plan(p *project.Project, networked func(*project.Service) bool, gateway string, held func(service string, target uint16) (uint16, bool), external []string) (map[portKey]uint16, []proxy.Route, error) {
	private := map[portKey]uint16{}
	var routes []proxy.Route
	if p.X.Trace.Disabled {
		return private, nil, nil
	}
	// Ports no private port may take: every declared port (the proxy binds
	// them after this plan), those running containers keep, and every
	// private port given so far. A probe only sees ports bound now, and two
	// services whose candidates met would share one, so one's callers
	// reached the other.
	taken := map[uint16]bool{}
	for _, s := range p.Services {
		for _, port := range s.Ports {
			taken[port.Declared()] = true
			if held != nil && networked(s) {
				if pp, ok := held(s.Name, port.Target); ok {
					taken[pp] = true
				}
			}
		}
	}
	for _, s := range p.Services {
		wired := networked(s)
		ext := s.X.External || slices.Contains(external, s.Name)
		if ext {
			wired = false // it runs on the host
		}
		if !wired && !ext && (s.X.PortEnv == "" || s.X.Run.Empty()) {
			continue
		}
		for _, port := range s.Ports {
			if port.Protocol == "udp" || wired && port.Published == 0 {
				continue
			}
			pp, ok := uint16(0), false
			if wired && held != nil {
				pp, ok = held(s.Name, port.Target)
			}
			if !ok {
				var err error
				if pp, err = privatePort(p.Name, s.Name, port.Target, taken); err != nil {
					return nil, nil, fmt.Errorf("finding a private port for service %q: %w", s.Name, err)
				}
			}
			taken[pp] = true
			private[portKey{s.Name, port.Target}] = pp
			declared := port.Declared()
			r := proxy.Route{
				Service:  s.Name,
				Listen:   net.JoinHostPort(port.HostIP, strconv.Itoa(int(declared))),
				Upstream: net.JoinHostPort("127.0.0.1", strconv.Itoa(int(pp))),
				Protocol: s.X.ProtocolOf(port.Target),
			}
			routes = append(routes, r)
			if gateway != "" && port.HostIP != gateway {
				// Containers reach every service through the host's bridge
				// address (host.docker.internal); see the docker backend's Wire.
				r.Listen = net.JoinHostPort(gateway, strconv.Itoa(int(declared)))
				routes = append(routes, r)
			}
		}
	}
	return private, routes, nil
}

// ambassadors says, per service, where the ambassador of a container
// service relays each target port that the proxy fronts: to the proxy's
// route on the host's bridge address, <gateway>:<declared port>, which
// plan adds whenever gateway is set. Containers calling the service by
// name (http://orders:8080) then reach the proxy like those calling
// host.docker.internal:<declared port>. Nil without a gateway (no
// containers run).
func ambassadors(p *project.Project, private map[portKey]uint16, gateway string) map[string]*runner.Ambassador {
	if gateway == "" {
		return nil
	}
	out := map[string]*runner.Ambassador{}
	for _, s := range p.Services {
		switch s.X.Ambassador {
		case "never":
			continue
		case "", "auto":
			if !namedByOthers(p, s.Name) {
				continue
			}
		}
		for _, port := range s.Ports {
			if _, ok := private[portKey{s.Name, port.Target}]; !ok {
				continue
			}
			declared := port.Declared()
			a := out[s.Name]
			if a == nil {
				a = &runner.Ambassador{Relay: map[uint16]string{}}
				out[s.Name] = a
			}
			a.Relay[port.Target] = net.JoinHostPort(gateway, strconv.Itoa(int(declared)))
		}
	}
	return out
}

// namedByOthers reports whether another service's environment, command,
// entrypoint, healthcheck or links name service s, as a host name: a hint that a
// container calls it by name, which only an ambassador can trace. A stack
// whose containers call each other at localhost:<port> (rewritten to reach
// the proxy) needs none, and saves the extra containers.
func namedByOthers(p *project.Project, name string) bool {
	re := regexp.MustCompile(`(^|[^A-Za-z0-9_.-])` + regexp.QuoteMeta(name) + `($|[^A-Za-z0-9_-])`)
	for _, o := range p.Services {
		if o.Name == name {
			continue
		}
		var texts []string
		for _, v := range o.Compose.Environment {
			if v != nil {
				texts = append(texts, *v)
			}
		}
		texts = append(texts, o.Compose.Command...)
		texts = append(texts, o.Compose.Entrypoint...)
		texts = append(texts, o.Compose.Links...)
		texts = append(texts, o.Compose.ExternalLinks...)
		if hc := o.Compose.HealthCheck; hc != nil {
			texts = append(texts, hc.Test...)
		}
		for _, t := range texts {
			if re.MatchString(t) {
				return true
			}
		}
	}
	return false
}

// candidate is the i-th port privatePort tries for a service port: in
// the window w, by a hash of its name, so that it stays the same.
func candidate(project, service string, target uint16, i uint32) uint16 {
	return candidateIn(privateWindow(), project, service, target, i)
}

func candidateIn(w portWindow, project, service string, target uint16, i uint32) uint16 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%s/%d", project, service, target)
	return uint16(w.lo + (h.Sum32()%w.n+i*2503)%w.n)
}

// portWindow is a range of ports, [lo, lo+n).
type portWindow struct{ lo, n uint32 }

// privateWindow is where private ports come from: outside the kernel's
// ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), whose ports
// the kernel hands to every outgoing connection, so that a private port
// never collides with a client socket, and above 10000, clear of the
// ports dev servers use. It is the larger side of the ephemeral range.
func privateWindow() portWindow {
	lo, hi := uint32(32768), uint32(60999) // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.ParseUint(f[0], 10, 16)
			h, err2 := strconv.ParseUint(f[1], 10, 16)
			if err1 == nil && err2 == nil && l <= h {
				lo, hi = uint32(l), uint32(h)
			}
		}
	}
	return windowOutside(lo, hi)
}

// windowOutside is the larger window of 10000..65535 outside [lo, hi],
// else (an ephemeral range that covers nearly all of it) 1024..lo-1.
func windowOutside(lo, hi uint32) portWindow {
	const floor, top = 10000, 65536
	below := portWindow{floor, 0}
	if lo > floor {
		below.n = lo - floor
	}
	above := portWindow{max(hi+1, floor), 0}
	if hi+1 < top {
		above.n = top - above.lo
	}
	best := below
	if above.n > best.n {
		best = above
	}
	if best.n < 1000 && lo > 1024 {
		best = portWindow{1024, lo - 1024}
	}
	if best.n == 0 {
		best = portWindow{floor, top - floor}
	}
	return best
}

// privatePort picks the private port of a service port: the same one on
// every run when it is free (so a container's config, which names it, is
// unchanged and the container is not recreated), else the next free one
// of its sequence in the window. It never picks one in taken.
func privatePort(project, service string, target uint16, taken map[uint16]bool) (uint16, error) {
	w := privateWindow()
	for i := range uint32(512) {
		port := candidateIn(w, project, service, target, i)
		if taken[port] {
			continue
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))); err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port on 127.0.0.1 in %d-%d (outside the kernel's ephemeral range) for service %q; free some", w.lo, w.lo+w.n-1, service)
}

// checkRoutes reports every proxied port that is taken, with its holder,
// before the proxy binds any.
func checkRoutes(routes []proxy.Route) error {
	var errs []error
	// A port the proxy also listens on at the bridge address is one
	// conflict for the user, not one per address.
	told := map[string]bool{}
	for _, r := range routes {
		l, err := net.Listen("tcp", r.Listen)
		if err == nil {
			l.Close()
			continue
		}
		_, portStr, _ := net.SplitHostPort(r.Listen)
		if told[r.Service+"/"+portStr] {
			continue
		}
		told[r.Service+"/"+portStr] = true
		port, _ := strconv.Atoi(portStr)
		errs = append(errs, runner.PortInUse(r.Service, port))
	}
	return errors.Join(errs...)
}

// callers identifies which service opened a connection to the proxy: from
// the socket's owner among the services' process trees on loopback, and
// from the container's address otherwise.
//
// Services that churn connections (Go's default client keeps two idle
// connections per host, so under load most calls open a new one) make
// this a hot path. The tree that last called the same port is searched
// first (a service's callers rarely change), then the trees that held a
// caller most recently, and each tree's process list is reused for
// treeTTL.
type callers struct {
	r         func() *runner.Runner
	container func(netip.Addr) string
	sockets   proc.Sockets // remembers the services' fds between lookups
	outside   outsiders    // processes that run services outside devstack

	mu     sync.Mutex
	recent []int // roots that held a caller's socket, most recent first
	// byServer is the root that last held a caller's socket, by the
	// address the caller connected to.
	byServer map[netip.AddrPort]int
	trees    map[int]tree
}

type tree struct {
	pids []int
	at   time.Time
}

// treeTTL bounds how long a child process started by a service can go
// unnoticed as its caller.
const treeTTL = 500 * time.Millisecond

func (c *callers) Caller(client, server netip.AddrPort) string {
	r := c.r()
	if r == nil {
		return ""
	}
	if !client.Addr().IsLoopback() {
		if c.container != nil {
			return c.container(client.Addr())
		}
		return ""
	}
	byPID := map[int]string{}
	var roots []int
	for name, inst := range r.Instances() {
		if hp, ok := inst.(runner.HostProcess); ok {
			pid := hp.PID()
			byPID[pid] = name
			roots = append(roots, pid)
		}
	}
	for pid, name := range c.outside.get(r) {
		if _, ok := byPID[pid]; !ok {
			byPID[pid] = name
			roots = append(roots, pid)
		}
	}
	c.mu.Lock()
	rank := map[int]int{}
	for i, root := range c.recent {
		rank[root] = len(c.recent) - i
	}
	if root, ok := c.byServer[server]; ok {
		rank[root] = len(c.recent) + 1
	}
	c.mu.Unlock()
	slices.SortStableFunc(roots, func(a, b int) int { return rank[b] - rank[a] })
	root, ok := c.sockets.Owner(client, server, roots, c.tree)
	if !ok {
		return c.probe(r, client, server, roots)
	}
	c.mu.Lock()
	c.recent = append([]int{root}, slices.DeleteFunc(c.recent, func(x int) bool { return x == root })...)
	c.recent = c.recent[:min(len(c.recent), 8)]
	if c.byServer == nil || len(c.byServer) >= 1024 {
		c.byServer = map[netip.AddrPort]int{} // bounded: ports of routes that went
	}
	c.byServer[server] = root
	c.mu.Unlock()
	return byPID[root]
}

// Probing reports whether one of the runner's healthcheck probes runs
// now (proxy.ProbeWatcher).
func (c *callers) Probing() bool {
	r := c.r()
	return r != nil && r.Probing()
}

// probe names the client of a connection no service holds when it is a
// healthcheck probe of the runner's, as trace.ProbeCaller of the service
// it checks; "" otherwise. A probe is a process of the supervisor's own,
// outside the services' trees, marked with proc.HealthcheckEnv.
func (c *callers) probe(r *runner.Runner, client, server netip.AddrPort, services []int) string {
	if !r.Probing() {
		return ""
	}
	in := map[int]bool{}
	for _, root := range services {
		for _, pid := range c.tree(root) {
			in[pid] = true
		}
	}
	self := os.Getpid()
	var candidates []int
	for _, pid := range proc.Descendants(self) {
		if pid != self && !in[pid] {
			candidates = append(candidates, pid)
		}
	}
	pid, ok := c.sockets.Owner(client, server, candidates, func(pid int) []int { return []int{pid} })
	if !ok {
		return ""
	}
	if svc, ok := proc.Getenv(pid, proc.HealthcheckEnv); ok && svc != "" {
		return trace.ProbeCaller(svc)
	}
	return ""
}

// tree lists root's processes, read again once treeTTL old.
func (c *callers) tree(root int) []int {
	c.mu.Lock()
	t, ok := c.trees[root]
	c.mu.Unlock()
	if ok && time.Since(t.at) < treeTTL {
		return t.pids
	}
	pids := proc.Descendants(root)
	c.mu.Lock()
	if c.trees == nil || len(c.trees) > 1024 {
		c.trees = map[int]tree{} // dead roots go with the rest
	}
	c.trees[root] = tree{pids, time.Now()}
	c.mu.Unlock()
	return pids
}

// traceOptions turns x-devstack.trace into proxy options.
func traceOptions(p *project.Project, rec trace.Recorder) (proxy.Options, error) {
	o := proxy.Options{Recorder: rec, Redact: p.X.Trace.Redact, RedactQuery: p.X.Trace.RedactQuery, CaptureBodies: p.X.Trace.Bodies}
	if f := p.X.Trace.Formats; f != "" {
		formats, err := propagate.ParseFormats(f)
		if err != nil {
			return o, fmt.Errorf("x-devstack.trace.formats: %w", err)
		}
		o.Formats = formats
		o.NoFormats = formats == 0 // "none": only X-Request-ID is written

	}
	return o, nil
}

package supervisor

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// Hops devstack cannot trace, and why: said once in up (an event), in ps
// (a warning of the service) and in the service's log, each with its fix.
// Some are known from the file (untraced); one only once the service runs
// (reach.check): a container service that listens on 127.0.0.1 inside its
// container answers its own healthcheck, yet no caller reaches it.

// untraced lists, by service, the calls to it that no proxy route carries,
// from the file and the plan's private ports.
func untraced(p *project.Project, networked func(*project.Service) bool, private map[portKey]uint16) map[string][]string {
	out := map[string][]string{}
	if p.X.Trace.Disabled {
		return out
	}
	for _, s := range p.Services {
		if len(s.Ports) == 0 && !networked(s) {
			continue
		}
		if !networked(s) {
			if s.X.PortEnv == "" && !s.X.Run.Empty() {
				out[s.Name] = append(out[s.Name], fmt.Sprintf(
					"calls to %s are not traced: without x-devstack.port_env devstack cannot move it to a private port and front %s; add port_env: PORT (the variable that tells %s its port)",
					s.Name, portList(s.Ports), s.Name))
			}
			continue
		}
		if !namedByOthers(p, s.Name) {
			continue
		}
		// A container called by name: its ambassador relays the ports the
		// proxy fronts, the published ones; a call to any other port goes
		// straight to the container.
		var bare []string
		for _, port := range s.Ports {
			if _, ok := private[portKey{s.Name, port.Target}]; !ok && port.Protocol != "udp" {
				bare = append(bare, strconv.Itoa(int(port.Target)))
			}
		}
		for _, e := range s.Compose.Expose {
			if t, err := strconv.Atoi(strings.SplitN(e, "/", 2)[0]); err == nil && !slices.Contains(bare, strconv.Itoa(t)) && private[portKey{s.Name, uint16(t)}] == 0 {
				bare = append(bare, strconv.Itoa(t))
			}
		}
		switch {
		case len(bare) > 0:
			out[s.Name] = append(out[s.Name], fmt.Sprintf(
				"calls to %s:%s by name are not traced: %s publishes no host port for it, and devstack traces published ports; publish it (ports: [\"%s\"]) to trace them",
				s.Name, strings.Join(bare, ","), s.Name, bare[0]))
		case len(s.Ports) == 0:
			out[s.Name] = append(out[s.Name], fmt.Sprintf(
				"calls to %s by name are not traced: %s publishes no port, and devstack traces published ports; publish the port others call (ports: [\"PORT\"]) to trace them",
				s.Name, s.Name))
		}
	}
	return out
}

func portList(ports []project.Port) string {
	var ps []string
	for _, p := range ports {
		ps = append(ps, strconv.Itoa(int(p.Declared())))
	}
	if len(ps) == 1 {
		return "port " + ps[0]
	}
	return "ports " + strings.Join(ps, ", ")
}

// reach checks, once per instance, that the proxy can reach a container
// service's published ports. Docker publishes a port whatever listens in
// the container; a service bound to 127.0.0.1 in there answers its own
// healthcheck (run inside) while every connection from outside is closed
// at once, so its callers get 502s that say only "connection reset".
type reach struct {
	mu      sync.Mutex
	checked map[string]string // service → instance id checked
	found   map[string]string // service → the finding, while it holds
	grace   time.Duration     // reachGrace when 0 (tests shorten it)
}

// check looks at a running container service's ports (addrs, on the
// host) unless this instance was checked, and reports a new finding.
func (r *reach) check(st runner.ServiceStatus, addrs []string, report func(service, msg string)) {
	if st.State != runner.StateRunning || st.Health == runner.HealthStarting || st.ID == "" || len(addrs) == 0 {
		return
	}
	r.mu.Lock()
	if r.checked == nil {
		r.checked, r.found = map[string]string{}, map[string]string{}
	}
	if r.checked[st.Name] == st.ID {
		r.mu.Unlock()
		return
	}
	r.checked[st.Name] = st.ID
	delete(r.found, st.Name)
	r.mu.Unlock()
	go func() {
		for _, a := range addrs {
			grace := r.grace
			if grace == 0 {
				grace = reachGrace
			}
			if err := closedFor(a, grace); err != nil {
				msg := fmt.Sprintf("calls to %s are not traced and fail: its container closes every connection to %s at once (%v), though %s runs; it most likely listens on 127.0.0.1 inside its container, which nothing outside reaches; make it listen on 0.0.0.0",
					st.Name, a, err, st.Name)
				r.mu.Lock()
				r.found[st.Name] = msg
				r.mu.Unlock()
				report(st.Name, msg)
				return
			}
		}
	}()
}

// finding is the current finding about service, or "".
func (r *reach) finding(service string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.found[service]
}

// reachGrace is how long a port may stay closed after its container
// runs before it counts: a service without a healthcheck may still be
// starting to listen.
const reachGrace = 5 * time.Second

// closedFor reports why addr closes connections at once, when it still
// does after grace; nil as soon as it does not.
func closedFor(addr string, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		err := closedAtOnce(addr)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond) // the service's start, not a test's wait
	}
}

// closedAtOnce dials addr and waits a moment: a service that listens
// keeps a silent connection open (or greets), while Docker's port
// forwarding, with nothing listening on the container's address, closes
// it at once (or refuses it).
func closedAtOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	_, err = c.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if errors.Is(err, io.EOF) {
		return errors.New("closed before a byte")
	}
	return err
}

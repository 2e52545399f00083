package runner

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/devstack/devstack/runner/proc"
)

// CheckPorts makes sure every declared host port of the named services (all
// when none) is free before anything starts. The error names the service,
// the port and, where the system tells, the process that holds it.
func (r *Runner) CheckPorts(names []string) error {
	sel, err := r.lookup(names)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range r.closure(sel) {
		st, _ := r.snapshot(s)
		if st.State == StateRunning || st.State == StateRestarting {
			continue // ours
		}
		for _, p := range s.spec.Ports {
			if p.Protocol == "udp" {
				continue
			}
			if r.listenPort(s.spec.Name, p) != p.Declared() {
				continue // the proxy owns it, and checks it when it binds
			}
			port := int(p.Declared())
			addr := net.JoinHostPort(p.HostIP, strconv.Itoa(port))
			l, err := net.Listen("tcp", addr)
			if err == nil {
				l.Close()
				continue
			}
			errs = append(errs, PortInUse(s.spec.Name, port))
		}
	}
	return errors.Join(errs...)
}

// PortInUse is the error for a taken port: it names the service, the port
// and, where the system tells, the process holding it.
func PortInUse(service string, port int) error {
	// A socket with no process of ours to name: another user's, a
	// container's (docker-proxy runs as root), or one closing.
	holder := " by a process devstack cannot see (another user's, a container's, or a socket still closing; `sudo ss -ltnp 'sport = :" + strconv.Itoa(port) + "'` names it)"
	if pid, cmd, ok := proc.PortHolder(port); ok {
		holder = fmt.Sprintf(" by pid %d (%s)", pid, cmd)
	}
	return fmt.Errorf("port %d of service %q is already in use%s; stop that process or change the published port of %q",
		port, service, holder, service)
}

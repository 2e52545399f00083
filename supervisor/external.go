package supervisor

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/proc"
)

// answerWait bounds how long ps waits on a service's private port to say
// whether something outside devstack listens there.
const answerWait = 300 * time.Millisecond

// whyExternal says, to follow "<service> is", that the user runs the
// service and how to start it: the proxy answers that when it does not
// listen.
func (s *Supervisor) whyExternal(name string) string {
	where := "its private port"
	if hr, err := s.run.HostRun(name); err == nil && len(hr.Listen) > 0 {
		where = strings.Join(hr.Listen, " and ")
	}
	return fmt.Sprintf("external and not running: devstack does not start it; run it yourself listening on %s (`devstack env %s` prints the command line and environment), or `devstack start %s` to have devstack run it",
		where, name, name)
}

// lookOutside fills in, for ps, what runs outside devstack: whether an
// external service's ports answer (Health up or down, and how to start
// it when down), and a stopped service that the user runs in its place.
// The ports are tried at once, each for at most answerWait.
func (s *Supervisor) lookOutside(st []runner.ServiceStatus) {
	var wg sync.WaitGroup
	for i := range st {
		if st[i].State != runner.StateExternal && st[i].State != runner.StateStopped {
			continue
		}
		hr, err := s.run.HostRun(st[i].Name)
		if err != nil || len(hr.Listen) == 0 || len(hr.Listen) != len(hr.Declared) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", hr.Listen[0], answerWait)
			up := err == nil
			if up {
				c.Close()
			}
			switch {
			case st[i].State == runner.StateStopped && up:
				st[i].Warnings = append(st[i].Warnings, fmt.Sprintf("%s is stopped, but something answers on its port %s: it runs outside devstack, and the proxy forwards port %d there; `devstack start %s` once it is stopped runs it in devstack",
					st[i].Name, hr.Listen[0], hr.Declared[0], st[i].Name))
			case st[i].State == runner.StateExternal && up:
				st[i].Health = runner.HealthUp
			case st[i].State == runner.StateExternal:
				st[i].Health = runner.HealthDown
				st[i].Warnings = append(st[i].Warnings, st[i].Name+" is "+s.whyExternal(st[i].Name))
			}
		}()
	}
	wg.Wait()
}

// outsideTTL bounds how long a run of a service outside devstack that
// started (or ended) can go unnoticed as a caller.
const outsideTTL = 2 * time.Second

// outsiders are the processes that run services outside devstack: the
// holders of the private ports of services that are external, or stopped
// and answering there. Their calls are named by socket like those of the
// services devstack runs, so a service the user runs that drops trace
// context still has its calls linked. They are looked up at most once per
// outsideTTL, and not at all while no service is external or stopped.
type outsiders struct {
	mu   sync.Mutex
	at   time.Time
	pids map[int]string
}

// get returns the outsiders' pids, by service.
func (o *outsiders) get(r *runner.Runner) map[int]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if time.Since(o.at) < outsideTTL {
		return o.pids
	}
	o.at, o.pids = time.Now(), nil
	for _, st := range r.Status() {
		if st.State != runner.StateExternal && st.State != runner.StateStopped {
			continue
		}
		hr, err := r.HostRun(st.Name)
		if err != nil {
			continue
		}
		for _, l := range hr.Listen {
			_, port, _ := net.SplitHostPort(l)
			n, err := strconv.Atoi(port)
			if err != nil {
				continue
			}
			if pid, _, ok := proc.PortHolder(n); ok && pid != os.Getpid() {
				if o.pids == nil {
					o.pids = map[int]string{}
				}
				o.pids[pid] = st.Name
			}
		}
	}
	return o.pids
}

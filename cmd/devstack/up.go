package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/proc"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/supervisor"
)

type upOptions struct {
	backend    string
	build      bool     // --build: build again even on a running stack
	wait       bool     // --wait: docker compose's word for -d
	except     []string // services the user runs (see runner/external.go)
	detach     bool
	noColor    bool
	timestamps bool
	timeout    time.Duration
	stop       stopTimeout // -t: the grace of the services up stops
	watch      bool
}

func newUpCmd(g *globalOptions) *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up [SERVICE...]",
		Short: "Start the stack (or the named services and what they depend on)",
		Long: `up starts services in dependency order, in parallel where the graph allows,
honouring depends_on conditions, healthchecks and restart policies.

In the foreground it streams every service's log with a coloured prefix;
Ctrl-C stops the stack in reverse dependency order (a second Ctrl-C kills at
once). With -d it returns once the stack is up (healthy where a healthcheck
exists) and leaves a background supervisor: use ps, logs, stop, start,
restart and down. up exits non-zero if the stack failed to come up.

If a supervisor already runs the project, up -d asks it to start the named
services (or any that are not running). If the file changed since that
supervisor started, up -d applies it, as a second docker compose up does:
changed containers are recreated, unchanged ones kept, and processes
restarted.

-t/--timeout SECONDS is the grace, between stop_signal and SIGKILL, of
every service up stops, in place of its stop_grace_period, as docker
compose's: the stack at Ctrl-C, and the processes up -d restarts to apply
a changed file. (A container up -d recreates is replaced at once, with or
without it.)`,
		ValidArgsFunction: g.serviceNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.wait {
				o.detach = true // as docker compose's --wait: detached, and wait
			}
			if o.timeout < 0 {
				return fmt.Errorf("--wait-timeout %s: want a duration of zero (no limit) or more, e.g. 2m", o.timeout)
			}
			if o.detach {
				if err := runUpDetached(cmd.Context(), g, o, args); err != nil || !o.watch {
					return err
				}
				return startWatching(cmd.Context(), g, args)
			}
			return runUpForeground(g, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.detach, "detach", "d", false, "run in the background; return once the stack is up")
	f.BoolVar(&o.wait, "wait", false, "as docker compose's --wait: the same as -d, which always waits until the stack is up")
	f.BoolVar(&o.build, "build", false, "build images (and run x-devstack.build) again, also on a running stack; up always builds the services with build: when it starts a stack")
	f.BoolVar(&o.noColor, "no-color", false, "no colours in the log prefix (also when NO_COLOR is set)")
	f.BoolVar(&o.timestamps, "timestamps", false, "prefix log lines with the time")
	f.BoolVar(&o.watch, "watch", false, "hot reload: follow the services' develop.watch rules once up (see `devstack watch`)")
	f.VarP(&o.stop, "timeout", "t", "when up stops services (Ctrl-C, or processes restarted to apply a changed file): "+timeoutUsage)
	f.Var((*secondsOrDuration)(&o.timeout), "wait-timeout", "with -d, give up waiting for the stack after this long: seconds, as docker compose takes them (60), or a duration (2m); 0: no limit")
	f.StringSliceVar(&o.except, "except", nil, "start everything but these services, which you run yourself; the proxy keeps their ports (`devstack env SERVICE` prints how to run one)")
	f.StringVar(&o.backend, "backend", "", "default backend for services that do not choose one: process or docker (default: docker where the engine answers and the service has image:/build:, else process)")
	return cmd
}

// runUpForeground runs the supervisor in this process and streams logs.
func runUpForeground(g *globalOptions, o *upOptions, names []string) error {
	// Our own signal handling: the first Ctrl-C stops gracefully, the
	// second kills.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancelUp := context.WithCancel(context.Background())
	defer cancelUp()

	p, err := g.load(ctx, append(slices.Clone(names), o.except...))
	if err != nil {
		return err
	}
	all := serviceList(p)
	pr := newPrinter(g.stdout, o.noColor, o.timestamps, all)
	sup, be, err := startStack(ctx, p, o.backend, supervisor.Options{
		External:     o.except,
		Services:     firstServices(names, o.except),
		ShutdownStop: o.stop.options(),
		Events: func(ev runner.Event) {
			if ev.Service == "" {
				pr.note(ev.Msg)
			}
			// Service events also reach the log as "sys" lines, printed
			// by the log follower below.
		},
	}, func(be *backends) { g.warnKeys(p, be.backendOf, false) })
	if errors.Is(err, supervisor.ErrRunning) {
		return fmt.Errorf("project %q is already running in the background; use `devstack logs -f` to follow it or `devstack down` to stop it", p.Name)
	}
	if err != nil {
		return err
	}
	defer be.Close()
	lines, cancelLogs := sup.Logs().Subscribe(nil)
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		for l := range lines {
			pr.line(l.Time, l.Service, l.Stream.String(), l.Text)
		}
	}()

	upErr := make(chan error, 1)
	go func() { upErr <- sup.Up(ctx, names) }()

	failed := false
	var sigCount int
wait:
	for {
		select {
		case err := <-upErr:
			upErr = nil
			if err != nil {
				pr.note("devstack: the stack failed to come up:\n  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
				failed = true
				break wait
			}
			pr.note(fmt.Sprintf("devstack: %s is up (%d services); Ctrl-C to stop", p.Name, len(names0(names, all))))
			if o.watch {
				pr.note(watchInProcess(ctx, sup))
			}
		case <-sigs:
			sigCount++
			break wait
		case <-sup.DownRequested():
			break wait
		}
	}
	cancelUp()
	killCtx, kill := context.WithCancel(context.Background())
	defer kill()
	go func() {
		for range sigs {
			sigCount++
			pr.note("devstack: killing everything now")
			kill()
		}
	}()
	pr.note("devstack: stopping " + p.Name + " (Ctrl-C again to kill at once)")
	err = sup.Shutdown(killCtx)
	cancelLogs()
	<-logsDone
	if err != nil {
		return err
	}
	if failed {
		return &exitError{code: 1}
	}
	pr.note("devstack: stopped")
	return nil
}

// secondsOrDuration is a duration flag that also takes a bare number of
// seconds, as docker compose's --wait-timeout does.
type secondsOrDuration time.Duration

func (d *secondsOrDuration) String() string { return time.Duration(*d).String() }
func (d *secondsOrDuration) Type() string   { return "seconds|duration" }
func (d *secondsOrDuration) Set(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		*d = secondsOrDuration(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want seconds, as docker compose takes them (60), or a duration with a unit (2m)")
	}
	*d = secondsOrDuration(v)
	return nil
}

// firstServices are the services a supervisor's first up starts or
// fronts, whose ports it holds from the start: the named ones and those
// the user runs (--except), or all when none is named.
func firstServices(names, except []string) []string {
	if len(names) == 0 {
		return nil
	}
	return append(slices.Clone(names), except...)
}

func names0(names, all []string) []string {
	if len(names) == 0 {
		return all
	}
	return names
}

// runUpDetached starts (or reuses) a background supervisor and waits until
// the stack is up.
func runUpDetached(ctx context.Context, g *globalOptions, o *upOptions, names []string) error {
	p, err := g.load(ctx, append(slices.Clone(names), o.except...))
	if err != nil {
		return err
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	progress := func(m control.Message) { printProgress(g.stderr, m) }
	c, dir, err := g.client(ctx, p)
	running := err == nil
	if running && len(o.except) > 0 {
		return fmt.Errorf("%s is already running; to run %s yourself, `devstack stop %s` (the proxy keeps its ports), then start it as `devstack env %s` prints",
			p.Name, strings.Join(o.except, ", "), strings.Join(o.except, " "), o.except[0])
	}
	var lead string
	if running {
		old, known := supervisor.RunningConfig(dir)
		what := describeChanges(old, p.Fingerprint())
		switch {
		case known && what != "":
			lead = fmt.Sprintf("%s was started from another version of its file (%s); applying it: changed containers are recreated, unchanged ones kept, processes restarted", p.Name, what)
		case o.build:
			lead = fmt.Sprintf("building %s again (--build): a new supervisor builds its images and runs x-devstack.build, recreates the containers whose image changed and restarts the processes", p.Name)
		default:
			fmt.Fprintf(g.stderr, "devstack: %s is already running; starting %s\n", p.Name, orAll(names))
			return c.Do(ctx, "up", names, runner.StopOptions{}, progress)
		}
	}
	// Backend problems (no engine) are reported here, before a supervisor
	// exists or one is asked to hand over; the supervisor checks again
	// with the same rules.
	be, err := newBackends(ctx, p, o.backend)
	if err != nil {
		return err
	}
	g.warnKeys(p, be.backendOf, false)
	if running {
		// What the new supervisor would refuse in the edited file stops
		// up now, while the running stack serves.
		check := supervisor.Options{Project: p, BackendFor: be.For, External: o.except}
		if exe, err := os.Executable(); err == nil {
			check.Builtin = supervisor.BuiltinCommand(exe)
		}
		if err := supervisor.Check(check); err != nil {
			be.Close()
			return fmt.Errorf("%w\nthe running stack was left as it is", err)
		}
	}
	if be.docker != nil && !running {
		// The supervisor removes them (Options.TakeOver) and says so in
		// the services' logs; the terminal is told here.
		if names, err := be.docker.ComposeMade(ctx, p.Name, p.WithDependencies(firstServices(names, o.except))); err == nil && len(names) > 0 {
			fmt.Fprintf(g.stderr, "devstack: replacing containers that docker compose made for %s: %s (the project's volumes are kept)\n", p.Name, strings.Join(names, ", "))
		}
	}
	be.Close()
	if running {
		if sup, ok := supervisor.SupervisorPID(dir); ok {
			st, err := c.Ps(ctx)
			if err != nil {
				return err
			}
			if err := portsForHandover(p, p.WithDependencies(withRunning(p, names, st)), sup, declaredPorts(st)); err != nil {
				return fmt.Errorf("%w\nthe running stack was left as it is", err)
			}
		}
		if names, err = handOver(ctx, c, dir, p, names, lead, o.stop.options(), g.stderr); err != nil {
			return err
		}
	}
	if err := spawnSupervisor(ctx, g, p, o.backend, o.except, names); err != nil {
		if running {
			left := "its processes were stopped and nothing of it runs now; fix the problem and run `devstack up -d` again"
			if be.usesDocker() {
				left = "its processes were stopped; its containers still run, unsupervised: fix the problem and run `devstack up -d` again (it takes them over), or `devstack down` to remove them"
			}
			return fmt.Errorf("%w\nthe stack was handed over to a new supervisor, which did not start: %s", err, left)
		}
		return err
	}
	c, dir, err = g.client(ctx, p)
	if err != nil {
		return fmt.Errorf("the supervisor started but does not answer: %w; see %s", err, supervisor.Paths{Dir: dir}.SupLog())
	}
	// The supervisor starts nothing until asked: asking over the API
	// streams every event from the first.
	if err := c.Do(ctx, "up", names, runner.StopOptions{}, progress); err != nil {
		why := strings.ReplaceAll(err.Error(), "\n", "\n  ")
		if ctx.Err() == nil && !supervisorAnswers(ctx, dir) {
			// It did not give up on the stack: it is gone (killed, or
			// crashed), and what it started is left behind.
			return fmt.Errorf("the supervisor of %s stopped while the stack was coming up (it was killed, or crashed: see %s):\n  %s\n"+
				"what it started may still run, unsupervised: `devstack down` stops it, `devstack up -d` cleans it up and starts again",
				p.Name, supervisor.Paths{Dir: dir}.SupLog(), why)
		}
		return fmt.Errorf("the stack failed to come up:\n  %s\nthe supervisor keeps running so you can look: `devstack ps`, `devstack logs SERVICE`; `devstack down` stops it", why)
	}
	fmt.Fprintf(g.stderr, "devstack: %s is up; `devstack ps` shows it, `devstack down` stops it\n", p.Name)
	return nil
}

// describeChanges says what differs between the file a supervisor runs
// and p's, or "" when nothing does.
func describeChanges(old, now project.Fingerprint) string {
	changed, added, removed, proj := old.Changes(now)
	var parts []string
	if len(changed) > 0 {
		parts = append(parts, "changed: "+strings.Join(changed, ", "))
	}
	if len(added) > 0 {
		parts = append(parts, "added: "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		parts = append(parts, "removed: "+strings.Join(removed, ", "))
	}
	if proj {
		parts = append(parts, "project settings changed")
	}
	return strings.Join(parts, "; ")
}

// portsForHandover checks the changed file's declared ports before the
// running stack is handed over, so that a conflict stops up while the
// old supervisor still runs everything. A port is fine when it is free or
// held by the running supervisor (its proxy) or one of its processes, or
// by docker-proxy (a container publishing it). Where the system does not
// tell who holds a port, it is let through only when the running stack
// declares it (running: its declared host ports): a stranger's port must
// stop up before the handover, not make the new supervisor fail after it.
// Only the ports of services, those the new supervisor starts, are
// checked: the others may be the user's.
func portsForHandover(p *project.Project, services []string, supervisorPID int, running map[int]bool) error {
	var errs []error
	if port := p.X.Toxiproxy; port > 0 {
		// The running supervisor's fault plugin may hold it already.
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			l.Close()
		} else if pid, _, ok := proc.PortHolder(port); !ok && !running[port] || ok && !proc.DescendsFrom(pid, supervisorPID) {
			errs = append(errs, fmt.Errorf("x-devstack.toxiproxy: port %d on 127.0.0.1 is taken (%w); stop what listens there (a Toxiproxy server?) or choose another port", port, err))
		}
	}
	for _, s := range p.Services {
		if !slices.Contains(services, s.Name) {
			continue
		}
		for _, port := range s.Ports {
			if port.Protocol == "udp" {
				continue
			}
			n := port.Declared()
			l, err := net.Listen("tcp", net.JoinHostPort(port.HostIP, strconv.Itoa(int(n))))
			if err == nil {
				l.Close()
				continue
			}
			pid, cmd, ok := proc.PortHolder(int(n))
			switch {
			case !ok && running[int(n)]:
				continue // most likely the running stack's own, where we cannot see it
			case ok && (proc.DescendsFrom(pid, supervisorPID) || strings.Contains(cmd, "docker-proxy")):
				continue
			}
			errs = append(errs, runner.PortInUse(s.Name, int(n)))
		}
	}
	return errors.Join(errs...)
}

// declaredPorts are the host ports a running stack declares, from ps's
// "127.0.0.1:8080->80/tcp" and "80/tcp".
func declaredPorts(st []runner.ServiceStatus) map[int]bool {
	out := map[int]bool{}
	for _, s := range st {
		for _, p := range s.Ports {
			spec, _, _ := strings.Cut(p, "/")
			if host, _, ok := strings.Cut(spec, "->"); ok {
				spec = host[strings.LastIndexByte(host, ':')+1:]
			}
			if n, err := strconv.Atoi(spec); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// handOver applies a changed file to a running stack, as a second
// `docker compose up` does: the running supervisor stops its processes
// and exits, leaving its containers, and the caller then starts a new
// supervisor on the new file, which keeps unchanged containers and
// recreates changed ones by config hash. It returns the services the new
// supervisor must start: the named ones plus every one that was running.
// stop says how the running supervisor stops its processes (up's -t).
func handOver(ctx context.Context, c *control.Client, dir string, p *project.Project, names []string, lead string, stop runner.StopOptions, stderr io.Writer) ([]string, error) {
	fmt.Fprintf(stderr, "devstack: %s\n", lead)
	if len(names) > 0 {
		st, err := c.Ps(ctx)
		if err != nil {
			return nil, err
		}
		names = withRunning(p, names, st)
	}
	if err := c.Handover(ctx, stop, func(m control.Message) { printProgress(stderr, m) }); err != nil {
		return nil, fmt.Errorf("asking the running supervisor to hand over: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, downTimeout)
	defer cancel()
	if err := supervisor.WaitUnlocked(wctx, dir); err != nil {
		return nil, err
	}
	return names, nil
}

// withRunning is names plus every service of p that runs in st, the
// services a handover's new supervisor starts; none (all) when names is
// empty.
func withRunning(p *project.Project, names []string, st []runner.ServiceStatus) []string {
	if len(names) == 0 {
		return nil
	}
	names = slices.Clone(names)
	for _, s := range st {
		if s.State == runner.StateRunning && p.Service(s.Name) != nil && !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	return names
}

func orAll(names []string) string {
	if len(names) == 0 {
		return "any service not running"
	}
	return strings.Join(names, ", ")
}

func printProgress(w io.Writer, m control.Message) {
	if m.Service != "" {
		fmt.Fprintf(w, "%s: %s\n", m.Service, m.Msg)
	} else {
		fmt.Fprintln(w, m.Msg)
	}
}

// spawnSupervisor re-executes devstack as a detached `supervise` process
// and waits until it says it serves the control API (or why it could not),
// over a pipe: no polling for the socket.
func spawnSupervisor(ctx context.Context, g *globalOptions, p *project.Project, backend string, except, names []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the devstack executable: %w", err)
	}
	dir := supervisor.StateDir(p.Name)
	if err := supervisor.EnsurePrivate(dir); err != nil {
		return err
	}
	logPath := supervisor.Paths{Dir: dir}.SupLog()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("opening supervisor log: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// Global flags go before the command (see newRootCmd).
	args := append(g.args(), "supervise")
	args = append(args, "--ready-fd", "3", "--backend", backend, "--client-up")
	for _, e := range except {
		args = append(args, "--except", e)
	}
	args = append(args, "--")
	args = append(args, names...)
	cmd := exec.Command(exe, args...)
	cmd.Dir, _ = os.Getwd()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	// A session of its own: the terminal's Ctrl-C and hangup don't reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the supervisor: %w", err)
	}
	w.Close()
	go cmd.Wait() // reap it if it exits while we wait; it outlives us otherwise
	msg := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		msg <- strings.TrimSpace(line)
	}()
	select {
	case m := <-msg:
		switch {
		case m == "ok":
			return nil
		case m != "":
			return errors.New(m)
		default:
			return fmt.Errorf("the supervisor exited while starting; see %s", logPath)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// supervisorAnswers says whether the supervisor of state dir dir still
// serves its control API.
func supervisorAnswers(ctx context.Context, dir string) bool {
	c, err := dialState(ctx, dir)
	if err != nil {
		return false
	}
	_, err = c.Ps(ctx)
	return err == nil
}

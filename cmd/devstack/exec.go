package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/docker"
	"github.com/devstack/devstack/runner/proc"
	"github.com/devstack/devstack/runner/project"
)

// running returns the status of a running service of the project's
// running stack, or an error saying what to do.
func (g *globalOptions) running(ctx context.Context, name string) (*project.Project, runner.ServiceStatus, error) {
	p, err := g.load(ctx, []string{name})
	if err != nil {
		return nil, runner.ServiceStatus{}, err
	}
	c, _, err := g.client(ctx, p)
	if errors.Is(err, control.ErrNotRunning) {
		return nil, runner.ServiceStatus{}, fmt.Errorf("%s is not running; start it with `devstack up -d`", p.Name)
	}
	if err != nil {
		return nil, runner.ServiceStatus{}, err
	}
	st, err := c.Ps(ctx)
	if err != nil {
		return nil, runner.ServiceStatus{}, err
	}
	i := slices.IndexFunc(st, func(s runner.ServiceStatus) bool { return s.Name == name })
	if i < 0 || st[i].State != runner.StateRunning || st[i].ID == "" {
		state := runner.State("not started")
		if i >= 0 {
			state = st[i].State
		}
		return nil, runner.ServiceStatus{}, fmt.Errorf("service %q is %s, not running; start it with `devstack up -d %s`", name, state, name)
	}
	return p, st[i], nil
}

type execOptions struct {
	env     []string
	workdir string
	user    string
	noTTY   bool
}

func newExecCmd(g *globalOptions) *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Use:   "exec SERVICE COMMAND [ARG...]",
		Short: "Run a command in a running service: its container, or a process's workdir and environment",
		Long: `exec runs a command in a running service and exits with its exit code.

For a container, it runs in the container (the Engine's exec, like
docker compose exec -T: no terminal). For a process, it runs on the host in
the service's working directory with the service's environment, as its
running process has them (PORT and the DEVSTACK_* variables included).`,
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: g.serviceNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, st, err := g.running(ctx, args[0])
			if err != nil {
				return err
			}
			var code int
			if st.Backend == "docker" {
				d, err := docker.New(ctx)
				if err != nil {
					return err
				}
				defer d.Close()
				code, err = d.Exec(ctx, st.ID, docker.ExecOptions{
					Cmd: args[1:], Env: o.env, Workdir: o.workdir, User: o.user,
					Stdin: os.Stdin, Stdout: g.stdout, Stderr: g.stderr,
				})
				if err != nil {
					return err
				}
			} else {
				if o.user != "" {
					return fmt.Errorf("--user: service %q runs as a process, as your user; it cannot switch users", args[0])
				}
				if code, err = execInProcess(ctx, st, args[1:], o, g.stdout, g.stderr); err != nil {
					return err
				}
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after SERVICE are the command's
	f.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable (KEY=VALUE; repeatable)")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory (default: the service's)")
	f.StringVarP(&o.user, "user", "u", "", "containers: run as this user")
	f.BoolVarP(&o.noTTY, "no-TTY", "T", true, "no terminal (the only mode; accepted for docker compose's habit)")
	interactiveFlags(f)
	return cmd
}

// execInProcess runs argv as the running process st does: in its working
// directory, with its environment, both read from /proc.
func execInProcess(ctx context.Context, st runner.ServiceStatus, argv []string, o *execOptions, stdout, stderr io.Writer) (int, error) {
	pid, err := strconv.Atoi(st.ID)
	if err != nil {
		return 0, fmt.Errorf("service %q has no process id (%q)", st.Name, st.ID)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the environment of service %q (pid %d): %w", st.Name, pid, err)
	}
	dir, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the working directory of service %q (pid %d): %w", st.Name, pid, err)
	}
	env := strings.Split(strings.TrimSuffix(string(environ), "\x00"), "\x00")
	// Not the service's marker: what exec starts is not the service, and
	// down must not take it for a leftover of it.
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "DEVSTACK_INSTANCE=") })
	if o.workdir != "" {
		dir = filepath.Join(dir, o.workdir)
		if filepath.IsAbs(o.workdir) {
			dir = o.workdir
		}
	}
	return runHere(ctx, argv, append(env, o.env...), dir, stdout, stderr)
}

// runHere runs argv in dir with env, stdin and stdout/stderr passed
// through, and returns its exit code.
func runHere(ctx context.Context, argv, env []string, dir string, stdout, stderr io.Writer) (int, error) {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if p, err := lookPath(argv[0], env, dir); err == nil {
		c.Path, c.Err = p, nil
	}
	c.Env, c.Dir = env, dir
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, stdout, stderr
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("running %s: %w", argv[0], err)
	}
	return 0, nil
}

// lookPath finds prog as a shell with env's PATH in dir would.
func lookPath(prog string, env []string, dir string) (string, error) {
	if strings.Contains(prog, "/") {
		if filepath.IsAbs(prog) {
			return prog, nil
		}
		return filepath.Join(dir, prog), nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		f := filepath.Join(d, prog)
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", exec.ErrNotFound
}

func newRunCmd(g *globalOptions) *cobra.Command {
	o := &execOptions{}
	var rm, noDeps bool
	cmd := &cobra.Command{
		Use:   "run [--rm] SERVICE [COMMAND [ARG...]]",
		Short: "Run a one-off command of a service: a new container, or a process in its workdir and environment",
		Long: `run runs a one-off command as the service would run, and exits with its
exit code. What the service depends on is started first (as up -d does,
and left running), unless --no-deps; the rest of the stack need not run.

For a container service, it is a new container of the service's image,
with its environment, mounts and networks and no published ports, removed
when it exits (docker compose run --rm; --rm is the only mode). For a
process service, the command runs on the host in the service's workdir
with the host's environment plus the service's.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: g.serviceNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := g.load(ctx, args[:1])
			if err != nil {
				return err
			}
			s := p.Service(args[0])
			argv := args[1:]
			if deps := dependencyNames(s); len(deps) > 0 && !noDeps {
				// As docker compose run: the one-off finds what it
				// depends on running.
				if err := runUpDetached(ctx, g, &upOptions{}, deps); err != nil {
					return fmt.Errorf("starting what %s depends on (--no-deps skips it): %w", s.Name, err)
				}
			}
			var code int
			if plannedBackend(p, s, "") == "docker" {
				d, err := docker.New(ctx)
				if err != nil {
					return err
				}
				defer d.Close()
				spec := runner.Spec{Project: p, Service: s, Env: append(serviceEnv(p, s), o.env...),
					Stdout: g.stdout, Stderr: g.stderr, Status: g.stderr}
				if code, err = d.RunOnce(ctx, spec, argv, os.Stdin); err != nil {
					return err
				}
			} else {
				if len(argv) == 0 {
					argv = s.X.Run.Argv()
				}
				env := append(os.Environ(), serviceEnv(p, s)...)
				dir := processWorkdir(p, s)
				if o.workdir != "" {
					dir = filepath.Join(dir, o.workdir)
				}
				if code, err = runHere(ctx, argv, append(env, o.env...), dir, g.stdout, g.stderr); err != nil {
					return err
				}
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVar(&rm, "rm", true, "remove the container when it exits (always)")
	f.BoolVar(&noDeps, "no-deps", false, "do not start what the service depends on")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable (KEY=VALUE; repeatable)")
	f.StringVarP(&o.workdir, "workdir", "w", "", "processes: working directory, relative to the service's")
	f.BoolVarP(&o.noTTY, "no-TTY", "T", true, "no terminal (the only mode)")
	interactiveFlags(f)
	return cmd
}

// interactiveFlags accepts docker compose's -i and -t (`exec -it web sh`):
// stdin is always passed on, and a process runs on your terminal as it is;
// a container's command gets no TTY.
func interactiveFlags(f *pflag.FlagSet) {
	f.BoolP("interactive", "i", true, "accepted for docker compose's habit: stdin is always passed on")
	f.BoolP("tty", "t", false, "accepted for docker compose's habit: a process runs on your terminal; a container's command gets no TTY")
}

// dependencyNames are the services s depends on directly.
func dependencyNames(s *project.Service) []string {
	var out []string
	for _, d := range s.DependsOn {
		out = append(out, d.Service)
	}
	return out
}

// serviceEnv is the service's own environment (environment and env_file)
// plus devstack's names for it, as KEY=VALUE.
func serviceEnv(p *project.Project, s *project.Service) []string {
	var env []string
	for k, v := range s.Compose.Environment {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	slices.Sort(env)
	return append(env, "DEVSTACK_PROJECT="+p.Name, "DEVSTACK_SERVICE="+s.Name)
}

// processWorkdir is where a process service runs (x-devstack.workdir).
func processWorkdir(p *project.Project, s *project.Service) string {
	wd := s.X.Workdir
	if wd == "" {
		wd = p.X.Workdir
	}
	if filepath.IsAbs(wd) {
		return wd
	}
	return filepath.Join(p.Dir, wd)
}

func newPortCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "port SERVICE PRIVATE_PORT",
		Short: "Print the host address where a service's port is reached",
		Long: `port prints HOST:PORT, the address on the host where callers reach the
service's port PRIVATE_PORT (the port it listens on, as in ports:
"8080:80" → 80), as docker compose port does.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: g.serviceNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := g.load(cmd.Context(), args[:1])
			if err != nil {
				return err
			}
			target, err := strconv.ParseUint(strings.TrimSuffix(args[1], "/tcp"), 10, 16)
			if err != nil {
				return fmt.Errorf("port %q: want a port number, e.g. 80", args[1])
			}
			s := p.Service(args[0])
			var known []string
			for _, pt := range s.Ports {
				known = append(known, strconv.Itoa(int(pt.Target)))
				if int(pt.Target) != int(target) || pt.Protocol != "tcp" {
					continue
				}
				host := pt.Published
				if pt.Range != "" {
					// Picked from the range when the stack started: the
					// running supervisor knows which.
					picked, err := g.pickedPort(cmd.Context(), p, s.Name, pt.Target)
					if err != nil {
						return err
					}
					host = picked
				}
				if host == 0 && plannedBackend(p, s, "") == "docker" {
					return fmt.Errorf("port %d of service %q is not published on the host; publish it (ports: [\"HOST_PORT:%d\"])", target, s.Name, target)
				}
				if host == 0 {
					host = pt.Target
				}
				_, err := fmt.Fprintf(g.stdout, "%s:%d\n", pt.HostIP, host)
				return err
			}
			if len(known) == 0 {
				return fmt.Errorf("service %q declares no ports", s.Name)
			}
			return fmt.Errorf("service %q has no port %d; its ports are %s", s.Name, target, strings.Join(known, ", "))
		},
	}
}

// pickedPort is the host port the running stack published for target
// of service, from its ps ("127.0.0.1:8001->80/tcp").
func (g *globalOptions) pickedPort(ctx context.Context, p *project.Project, service string, target uint16) (uint16, error) {
	c, _, err := g.client(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("service %q publishes a port range, picked when the stack starts, and %s is not running: %w", service, p.Name, err)
	}
	st, err := c.Ps(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range st {
		if s.Name != service {
			continue
		}
		for _, spec := range s.Ports {
			hostPart, rest, ok := strings.Cut(spec, "->")
			if !ok || !strings.HasPrefix(rest, strconv.Itoa(int(target))+"/") {
				continue
			}
			n, err := strconv.ParseUint(hostPart[strings.LastIndexByte(hostPart, ':')+1:], 10, 16)
			if err == nil {
				return uint16(n), nil
			}
		}
	}
	return 0, fmt.Errorf("the running stack does not say which port of the range service %q got", service)
}

func newTopCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:               "top [SERVICE...]",
		Short:             "List the processes running in each service",
		ValidArgsFunction: g.serviceNames,
		RunE: func(cmd *cobra.Command, names []string) error {
			ctx := cmd.Context()
			p, err := g.load(ctx, names)
			if err != nil {
				return err
			}
			c, _, err := g.client(ctx, p)
			if errors.Is(err, control.ErrNotRunning) {
				return fmt.Errorf("%s is not running; start it with `devstack up -d`", p.Name)
			}
			if err != nil {
				return err
			}
			st, err := c.Ps(ctx)
			if err != nil {
				return err
			}
			var d *docker.Backend
			defer func() {
				if d != nil {
					d.Close()
				}
			}()
			for _, s := range st {
				if len(names) > 0 && !slices.Contains(names, s.Name) || s.State != runner.StateRunning || s.ID == "" {
					continue
				}
				var titles []string
				var rows [][]string
				if s.Backend == "docker" {
					if d == nil {
						if d, err = docker.New(ctx); err != nil {
							return err
						}
					}
					if titles, rows, err = d.Top(ctx, s.ID); err != nil {
						return err
					}
				} else {
					titles, rows = processTop(s.ID)
				}
				fmt.Fprintln(g.stdout, s.Name)
				var b bytes.Buffer
				tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, strings.Join(titles, "\t"))
				for _, r := range rows {
					fmt.Fprintln(tw, strings.Join(r, "\t"))
				}
				tw.Flush()
				fmt.Fprintln(g.stdout, b.String())
			}
			return nil
		},
	}
}

// processTop lists a process service's main process and its descendants:
// PID, PPID and command line.
func processTop(id string) ([]string, [][]string) {
	pid, err := strconv.Atoi(id)
	if err != nil {
		return []string{"PID", "CMD"}, nil
	}
	var rows [][]string
	pids := proc.Descendants(pid)
	if !slices.Contains(pids, pid) {
		pids = append([]int{pid}, pids...)
	}
	for _, p := range pids {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if err != nil {
			continue // gone meanwhile
		}
		ppid := ""
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); err == nil {
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 1 {
				ppid = f[1]
			}
		}
		rows = append(rows, []string{strconv.Itoa(p), ppid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))})
	}
	return []string{"PID", "PPID", "CMD"}, rows
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/supervisor"
)

// globalOptions are the flags every command shares, as docker compose's.
type globalOptions struct {
	files      []string
	name       string
	profiles   []string
	envFiles   []string
	projectDir string
	stdout     io.Writer
	stderr     io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "devstack",
		Short: "Run a multi-service dev stack from a compose file, with tracing between services",
		Long: `devstack boots a stack from devstack.yaml (the Compose file format; compose.yaml
and docker-compose.yml are found too) and supervises it: dependency order,
healthchecks, restart policies and merged logs.

Services run as native processes when their x-devstack block says how
(x-devstack.run). Start with:

  devstack up          run the stack in the foreground, Ctrl-C stops it
  devstack up -d       run it in the background, then use ps, logs, down`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Global flags go before the command, as with docker compose, so
		// that `logs -f` can mean follow.
		TraverseChildren: true,
		// Without a Run, cobra prints the help and exits 0 for an unknown
		// command; a typo must fail, with the likely command.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return unknownCommand(cmd, args[0])
		},
	}
	root.Version = version()
	root.SetVersionTemplate("devstack {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(flagError) // every command's, too
	f := root.Flags()
	f.StringArrayVarP(&g.files, "file", "f", nil, "compose file to load (repeatable; later files override earlier ones)")
	f.StringVarP(&g.name, "project-name", "p", "", "project name (default: the file's name: key, else the directory name)")
	f.StringArrayVar(&g.profiles, "profile", nil, "enable services of this profile (repeatable)")
	f.StringArrayVar(&g.envFiles, "env-file", nil, "read variables for interpolation from this file instead of .env (repeatable)")
	f.StringVar(&g.projectDir, "project-directory", "", "directory the project's relative paths resolve against (default: the first file's directory)")
	root.AddCommand(
		newUpCmd(g), newDownCmd(g), newPsCmd(g), newLogsCmd(g),
		newLifecycleCmd(g, "start", "Start stopped services (and what they depend on); all the stack started when none is named"),
		newLifecycleCmd(g, "stop", "Stop services without removing them from the stack; all when none is named"),
		newLifecycleCmd(g, "restart", "Restart services, and those that depend on them with restart: true; all the stack started when none is named"),
		newExecCmd(g), newRunCmd(g), newPortCmd(g), newTopCmd(g), newVersionCmd(g),
		newConfigCmd(g), newSuperviseCmd(g), newTracesCmd(g), newTraceCmd(g), newAmbassadorCmd(g), newHolderCmd(),
		newFaultCmd(g), newPluginsCmd(g), newPluginCmd(), newWatchCmd(g),
		newEnvCmd(g),
	)
	return root
}

// unknownCommand is the error for `devstack NAME` when no command is
// called NAME, with the closest commands.
func unknownCommand(root *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if hint, ok := composeCommands[name]; ok {
		return fmt.Errorf("%s: a docker compose command; %s (see `devstack --help` for the commands)", msg, hint)
	}
	best, bestD := "", 3 // suggest within two edits
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() {
			continue
		}
		d := editDistance(name, c.Name())
		if strings.HasPrefix(c.Name(), name) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = c.Name(), d
		}
	}
	if best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	}
	return fmt.Errorf("%s (see `devstack --help` for the commands)", msg)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// flagError says what a flag's value should look like, in place of the
// parser's own words ("strconv.ParseInt: parsing "abc": invalid syntax"),
// and where to read about the flags.
func flagError(cmd *cobra.Command, err error) error {
	help := fmt.Sprintf("see `%s --help`", cmd.CommandPath())
	var bad *pflag.InvalidValueError
	if !errors.As(err, &bad) {
		if root := cmd.Root(); root != cmd && isRootFlag(root, err) {
			// docker compose's habit: the project's flags come first.
			return fmt.Errorf("%w: the project's flags (-f, -p, --profile, --env-file, --project-directory) go before the command, e.g. `devstack -f other.yaml %s`", err, cmd.Name())
		}
		if hint := composeFlag(cmd, err); hint != "" {
			return fmt.Errorf("%w: %s (%s)", err, hint, help)
		}
		if s := closestFlag(cmd, err); s != "" {
			return fmt.Errorf("%w; did you mean %s? (%s)", err, s, help)
		}
		return fmt.Errorf("%w (%s)", err, help)
	}
	name, value := "--"+bad.GetFlag().Name, bad.GetValue()
	switch bad.GetFlag().Value.Type() {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return fmt.Errorf("%s %q: want a whole number (%s)", name, value, help)
	case "duration":
		return fmt.Errorf("%s %q: want a duration with a unit, like 200ms, 2s or 5m (%s)", name, value, help)
	case "bool":
		return fmt.Errorf("%s %q: want true or false (%s)", name, value, help)
	}
	return fmt.Errorf("%s %q: %v (%s)", name, value, errors.Unwrap(bad), help)
}

// composeCommands say, for docker compose commands devstack does not
// have, what to do instead.
var composeCommands = map[string]string{
	"build":   "devstack builds the services with build: when it starts a stack, and `devstack up -d --build` builds again on a running one",
	"pull":    "devstack pulls an image when the engine does not have it, at up",
	"create":  "`devstack up -d` creates and starts",
	"kill":    "`devstack stop -t 0 SERVICE` sends stop_signal, then SIGKILL at once",
	"rm":      "`devstack down` removes the stack's containers",
	"pause":   "not supported; `devstack stop SERVICE` stops one",
	"unpause": "not supported; `devstack start SERVICE` starts one again",
	"images":  "`docker images` lists them",
	"cp":      "`docker cp` copies into a container; a process service sees the host's files",
	"events":  "`devstack logs -f` shows each service's starts, exits and health",
	"scale":   "set scale: (or deploy.replicas) in the file",
	"stats":   "not supported; `devstack top` lists each service's processes",
	"attach":  "`devstack logs -f SERVICE` follows a service's output",
	"wait":    "`devstack up -d` returns once the stack is up",
	"push":    "not supported: devstack builds images for this machine only",
}

// composeFlags say, for docker compose flags devstack does not take (by
// command and long name), what devstack does instead.
var composeFlags = map[string]string{
	"up no-deps":                   "devstack starts a service with what it depends on; `--except SERVICE` leaves one to you (the proxy keeps its ports)",
	"up force-recreate":            "devstack recreates a container whose configuration or image changed; `devstack up -d --build` builds and recreates, `devstack down` then `up` recreates all",
	"up remove-orphans":            "`devstack down` removes every container of the project",
	"up abort-on-container-exit":   "devstack keeps the stack running when a service exits (its restart policy applies); Ctrl-C stops it",
	"up exit-code-from":            "not supported; `devstack run --rm SERVICE` runs a service once and exits with its code",
	"up pull":                      "devstack pulls an image only when the engine does not have it",
	"up quiet-pull":                "devstack's pull progress goes to the service's log",
	"up no-build":                  "devstack builds the services with build: when it starts a stack",
	"up no-start":                  "not supported: up starts what it creates",
	"up attach":                    "up prints every service's log; `devstack logs -f SERVICE` follows one",
	"up no-attach":                 "up prints every service's log; `devstack logs -f SERVICE` follows one",
	"up scale":                     "set scale: (or deploy.replicas) in the file",
	"logs no-color":                "",
	"exec detach":                  "not supported: exec waits for the command",
	"exec index":                   "exec runs in the service's first replica",
	"exec privileged":              "not supported",
	"run service-ports":            "not supported: run publishes no ports",
	"run no-deps":                  "run starts nothing else",
	"run name":                     "not supported: devstack names the one-off container",
	"run entrypoint":               "not supported",
	"run volume":                   "not supported: run mounts the service's volumes",
	"run publish":                  "not supported: run publishes no ports",
	"run detach":                   "not supported: run waits for the command",
	"down rmi":                     "devstack keeps images; `docker image rm` removes them",
	"config resolve-image-digests": "not supported",
}

// composeFlag says what devstack does instead of the docker compose flag
// err names, or "".
func composeFlag(cmd *cobra.Command, err error) string {
	var unknown *pflag.NotExistError
	if !errors.As(err, &unknown) {
		return ""
	}
	name := unknown.GetSpecifiedName()
	if unknown.GetSpecifiedShortnames() != "" {
		switch cmd.Name() + " " + name[:1] {
		case "exec d", "run d":
			name = "detach"
		case "run v":
			name = "volume"
		case "run p":
			name = "publish"
		default:
			return ""
		}
	}
	hint := composeFlags[cmd.Name()+" "+name]
	if hint != "" {
		hint = "a docker compose flag; " + hint
	}
	return hint
}

// closestFlag names the command's flag closest to the unknown one in err
// (within two edits), or "".
func closestFlag(cmd *cobra.Command, err error) string {
	var unknown *pflag.NotExistError
	if !errors.As(err, &unknown) || unknown.GetSpecifiedShortnames() != "" {
		return ""
	}
	name := unknown.GetSpecifiedName()
	best, bestD := "", 3
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = "--"+f.Name, d
		}
	})
	return best
}

// isRootFlag reports whether err is pflag's "unknown flag" for a flag
// that the root command has.
func isRootFlag(root *cobra.Command, err error) bool {
	var unknown *pflag.NotExistError
	if !errors.As(err, &unknown) {
		return false
	}
	name := unknown.GetSpecifiedName()
	if unknown.GetSpecifiedShortnames() != "" {
		return root.Flags().ShorthandLookup(name[:1]) != nil
	}
	return root.Flags().Lookup(name) != nil
}

// load loads and validates the whole project, and checks that every
// service named on the command line is in it, so nothing starts on a typo.
func (g *globalOptions) load(ctx context.Context, names []string) (*project.Project, error) {
	opts := project.LoadOptions{
		Files: g.files, WorkDir: g.projectDir, Name: g.name,
		Profiles: g.profiles, EnvFiles: g.envFiles,
	}
	p, err := project.Load(ctx, opts)
	if name := g.projectName(); errors.Is(err, project.ErrNoFile) && len(g.files) == 0 && name != "" {
		// -p NAME from a directory without the file, as with docker
		// compose: the files are those the project last ran from.
		if src, ok := supervisor.SourceOf(supervisor.StateDir(name)); ok && len(src.Files) > 0 {
			opts.Files, opts.Name = src.Files, name
			p, err = project.Load(ctx, opts)
		} else {
			err = g.unknownName(name, err)
		}
	}
	if err != nil {
		return nil, err
	}
	if more := profilesOf(p, names); len(more) > 0 {
		// `up tool` for a service behind a profile starts it, as with
		// docker compose: its profiles are enabled for this project. The
		// flags carry them to a detached supervisor too (args).
		g.profiles = append(g.profiles, more...)
		opts.Profiles = g.profiles
		if p, err = project.Load(ctx, opts); err != nil {
			return nil, err
		}
	}
	if err := checkNames(p, names); err != nil {
		return nil, err
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(g.stderr, "warning:", w)
	}
	return p, nil
}

// args re-creates the global flags, for the detached supervisor.
func (g *globalOptions) args() []string {
	var a []string
	for _, f := range g.files {
		a = append(a, "--file", abs(f))
	}
	if g.name != "" {
		a = append(a, "--project-name", g.name)
	}
	for _, p := range g.profiles {
		a = append(a, "--profile", p)
	}
	for _, e := range g.envFiles {
		a = append(a, "--env-file", abs(e))
	}
	if g.projectDir != "" {
		a = append(a, "--project-directory", abs(g.projectDir))
	}
	return a
}

func abs(p string) string {
	if strings.HasPrefix(p, "/") || p == "-" {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	return wd + "/" + p
}

// client connects to the project's supervisor.
func (g *globalOptions) client(ctx context.Context, p *project.Project) (*control.Client, string, error) {
	dir := supervisor.StateDir(p.Name)
	c, err := dialState(ctx, dir)
	return c, dir, err
}

// projectName is the project named on the command line (-p) or by
// COMPOSE_PROJECT_NAME, or "".
func (g *globalOptions) projectName() string {
	if g.name != "" {
		return g.name
	}
	return os.Getenv("COMPOSE_PROJECT_NAME")
}

// unknownName adds to err, a project file's absence, when the project was
// named on the command line and has never run: that the name is unknown is
// likely the mistake (a typo in -p), more than the missing file.
func (g *globalOptions) unknownName(name string, err error) error {
	if name == "" || !errors.Is(err, project.ErrNoFile) || strings.Contains(err.Error(), "no project named") {
		return err
	}
	_, statErr := os.Stat(supervisor.StateDir(name))
	if statErr == nil {
		return err
	}
	if errors.Is(statErr, fs.ErrPermission) {
		return fmt.Errorf("%w\nproject %q: permission denied: its state (%s) belongs to another user; run devstack as that user, or use another project name", err, name, supervisor.StateDir(name))
	}
	return fmt.Errorf("%w\nno project named %q has run either (nothing in %s); check the name, or run the command next to the project file", err, name, supervisor.StateDir(name))
}

// dialState connects to the supervisor whose state dir is dir, with its
// token (control.ErrNotRunning when none answers).
func dialState(ctx context.Context, dir string) (*control.Client, error) {
	tok, _ := supervisor.ReadToken(dir)
	return control.Dial(ctx, supervisor.Paths{Dir: dir}.Socket(), tok)
}

// serviceNames completes service names from the project file.
func (g *globalOptions) serviceNames(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	p, err := g.load(cmd.Context(), nil)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, s := range p.Services {
		out = append(out, s.Name)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// profilesOf are the profiles that enable the named services that a
// profile disables, so that naming them enables them.
func profilesOf(p *project.Project, names []string) []string {
	var out []string
	for _, n := range names {
		if p.Service(n) != nil {
			continue
		}
		if s, ok := p.Compose.DisabledServices[n]; ok && len(s.Profiles) > 0 && !slices.Contains(out, s.Profiles[0]) {
			out = append(out, s.Profiles[0])
		}
	}
	return out
}

// checkNames rejects unknown service names before anything is started.
func checkNames(p *project.Project, names []string) error {
	for _, n := range names {
		if p.Service(n) == nil {
			return fmt.Errorf("no service %q in project %q; services are: %s", n, p.Name, strings.Join(serviceList(p), ", "))
		}
	}
	return nil
}

func serviceList(p *project.Project) []string {
	out := make([]string, 0, len(p.Services))
	for _, s := range p.Services {
		out = append(out, s.Name)
	}
	return out
}

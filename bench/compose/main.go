// Command compose measures `devstack up -d --backend docker` and
// `devstack down` against `docker-compose up -d` (plus waiting for the same
// health) and `docker-compose down`, side by side in one run, on the same
// compose files and the same image.
//
//	bench/compose.sh                  (builds devstack, then runs this)
//	go run ./bench/compose -devstack /tmp/ds -n 3
//
// Stacks, each written once to a file that both tools load:
//
//	shop  the five services of examples/shop, as a Compose-only file: the
//	      one-shot process "build" and x-devstack are left out, upstream
//	      URLs name services (Compose rewrites nothing), ports are free
//	      ones picked for this run.
//	wide  -wide services (default 20) running `shop serve fraud` on
//	      distinct ports, in layers of -layer: each service waits for one
//	      of the layer before it to be healthy.
//
// Both run the FROM scratch image of examples/shop/Dockerfile, built once
// before any timing. Every service has the healthcheck `bin/shop probe`,
// every -interval, and every -start-interval while it starts. An engine
// before API 1.44 ignores start_interval (and docker-compose 1.x cannot
// load it): compose's copy of the file goes without it there, which on
// such an engine means the same, and its containers are probed every
// -interval from their start; devstack then runs the check itself at
// start_interval during the start period.
//
// "up" is the wall time until every container is healthy: devstack's
// `up -d` returns once it has seen each healthy (by the engine's verdict,
// or its own probe at start_interval where the engine ignores it);
// `docker-compose up -d` returns once it has started everything (it waits
// for service_healthy dependencies on the way), and the bench then waits
// for the remaining health verdicts through the engine's events, so
// polling adds nothing to Compose's time. Either way the bench then
// checks, untimed, that the engine says every container is healthy.
// "down" is the wall time of the down command. Runs rotate between the
// tools.
//
// With -untraced (the default) a third column times devstack on the same
// services with x-devstack.trace.disabled: no proxy and no ambassador
// containers, which shows what devstack's tracing costs at up and down.
//
// With -floor (the default) one more column, "engine floor", times the
// least any tool must ask of the engine, to show how far below compose a
// tool can get at all, in the bench's own process through the Engine API
// (no process starts, no file is loaded):
//
//	up    the stack's containers and network are created by
//	      `docker-compose up --no-start` before the clock starts; then
//	      each container is started as soon as the services it depends
//	      on are healthy (those without dependencies at once), and counts
//	      as healthy at the engine's verdict or at the first pass of the
//	      bench's own run of its healthcheck (exec, every
//	      -start-interval, as devstack runs it on an engine that ignores
//	      start_interval), whichever is first.
//	down  every container of the project force-removed at once (the
//	      engine kills each with SIGKILL and removes it: no stop timeout,
//	      no order), then, when the last removal has returned, the
//	      project's network: what compose's down removes (volumes only
//	      with -v, and the image declares none). What to remove is listed
//	      before the clock starts, as a tool could know it from its up.
//
// What is left is the engine's own work, which it partly serialises
// (container starts; each container's network disconnect, the network's
// removal).
//
// With -timeline each timed up and down is also printed as a timeline: the
// engine's events for the project (container create, start, health,
// kill, die, destroy; network connect and destroy; the end of each
// healthcheck probe), stamped by the engine, against each line the tool
// printed (devstack's progress: started, healthy, stopping, stopped),
// stamped as it arrived, with the gap since the line before.
//
// Everything is bounded by -timeout, and every container, network and
// image the run created is removed on the way out, also on Ctrl-C.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/compose:", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	devstack string        // devstack binary
	compose  string        // docker-compose binary
	n        int           // timed runs per tool and stack
	wide     int           // services of the wide stack
	layer    int           // services per dependency layer of the wide stack
	interval time.Duration // healthcheck interval
	startInt time.Duration // healthcheck start_interval
	step     time.Duration // bound of one command
	timeout  time.Duration // bound of the whole run
	only     string        // run only this stack
	untraced bool          // also time devstack with the proxy off
	floor    bool          // also time the engine floor
	timeline bool          // print each timed run's timeline
	repo     string        // module root
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.devstack, "devstack", "", "devstack binary (default: go build ./cmd/devstack into a temp dir)")
	flag.StringVar(&o.compose, "compose", "docker-compose", "docker-compose binary")
	flag.IntVar(&o.n, "n", 3, "timed runs per tool and stack (medians are reported)")
	flag.IntVar(&o.wide, "wide", 20, "services of the generated stack")
	flag.IntVar(&o.layer, "layer", 5, "services per dependency layer of the generated stack")
	flag.DurationVar(&o.interval, "interval", 500*time.Millisecond, "healthcheck interval")
	flag.DurationVar(&o.startInt, "start-interval", 100*time.Millisecond, "healthcheck start_interval (in compose's file only where the engine honours it)")
	flag.DurationVar(&o.step, "step-timeout", 3*time.Minute, "bound of one up or down")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound of the whole run")
	flag.StringVar(&o.only, "only", "", "run only this stack: shop or wide")
	flag.BoolVar(&o.untraced, "untraced", true, "also time devstack on the same services with x-devstack.trace.disabled (no proxy, no ambassadors), to show what tracing costs")
	flag.BoolVar(&o.floor, "floor", true, "also time the engine floor, the least any tool must ask of the engine: up starts each container of a docker-compose stack created beforehand once its dependencies are healthy, until all are; down force-removes them all at once, then the network")
	flag.BoolVar(&o.timeline, "timeline", false, "print each timed up and down as a timeline: the engine's events for the project against the lines the tool printed (devstack's progress), on one clock; use with -n 1")
	flag.StringVar(&o.repo, "repo", ".", "module root (where examples/shop is)")
	flag.Parse()
	return o
}

func run() error {
	o := parseFlags()
	if o.n < 1 || o.wide < 1 || o.layer < 1 {
		return errors.New("-n, -wide and -layer must be at least 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	tmp, err := os.MkdirTemp("", "devstack-bench-compose")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	id := strconv.Itoa(os.Getpid())

	eng, err := newEngine(ctx)
	if err != nil {
		return err
	}
	defer eng.cli.Close()
	b := &bench{o: o, eng: eng, tmp: tmp, id: id, image: "dsbench-shop:" + id, out: os.Stdout, ports: map[int]bool{}}
	// Cleanup runs on a context of its own: the run's may be cancelled.
	defer b.cleanup()

	if err := b.prepare(ctx); err != nil {
		return err
	}
	stacks := []*stack{b.shopStack(), b.wideStack()}
	var results []result
	for _, s := range stacks {
		if o.only != "" && o.only != s.name {
			continue
		}
		if err := s.write(tmp, o.startInt, b.startInterval); err != nil {
			return err
		}
		r, err := b.measure(ctx, s)
		if err != nil {
			return fmt.Errorf("stack %s: %w", s.name, err)
		}
		results = append(results, r)
	}
	b.report(results)
	return nil
}

// bench holds what one run shares.
type bench struct {
	o     options
	eng   *engine
	tmp   string
	id    string
	image string
	out   io.Writer

	startInterval bool         // the engine honours healthcheck start_interval
	projects      []projectRef // every project used, for cleanup
	imageBuilt    bool
	helperImages  map[string]bool // devstack's helper images before the run
	ports         map[int]bool    // host ports given out to the stacks
}

// prepare checks the tools, builds devstack if needed, and builds the
// shop image once.
func (b *bench) prepare(ctx context.Context) error {
	b.startInterval = apiAtLeast(b.eng.api, "1.44")
	// devstack makes its ambassador image on the fly; cleanup removes it
	// only if this run made it.
	var err error
	if b.helperImages, err = b.eng.imagesLabelled(ctx, helperImageLabel); err != nil {
		return err
	}
	cv, err := exec.CommandContext(ctx, b.o.compose, "version", "--short").Output()
	if err != nil {
		return fmt.Errorf("running %s version: %w; install docker-compose or pass -compose", b.o.compose, err)
	}
	fmt.Fprintf(b.out, "engine %s (API %s); %s %s; --wait: %s\n", b.eng.version, b.eng.api, filepath.Base(b.o.compose),
		strings.TrimSpace(string(cv)), b.composeWait(ctx))
	if b.startInterval {
		fmt.Fprintf(b.out, "healthcheck: interval %s, start_interval %s for both tools (the engine honours it)\n", b.o.interval, b.o.startInt)
	} else {
		fmt.Fprintf(b.out, "healthcheck: interval %s, start_interval %s; API %s < 1.44 ignores start_interval, so compose's copy of the file goes without it (docker-compose 1.x cannot load it) and its containers are probed every %s; devstack probes at start_interval itself\n",
			b.o.interval, b.o.startInt, b.eng.api, b.o.interval)
	}

	if b.o.devstack == "" {
		b.o.devstack = filepath.Join(b.tmp, "devstack")
		if err := b.cmd(ctx, b.o.repo, nil, "go", "build", "-o", b.o.devstack, "./cmd/devstack"); err != nil {
			return fmt.Errorf("building devstack: %w", err)
		}
	}
	fmt.Fprintf(b.out, "devstack: %s\n", b.o.devstack)

	// The image: the static shop binary in examples/shop's Dockerfile.
	bctx := filepath.Join(b.tmp, "image")
	if err := os.MkdirAll(filepath.Join(bctx, "bin"), 0o755); err != nil {
		return err
	}
	shop := filepath.Join(b.o.repo, "examples", "shop")
	for _, f := range []string{"Dockerfile", ".dockerignore"} {
		data, err := os.ReadFile(filepath.Join(shop, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(bctx, f), data, 0o644); err != nil {
			return err
		}
	}
	env := append(os.Environ(), "CGO_ENABLED=0")
	if err := b.cmd(ctx, shop, env, "go", "build", "-o", filepath.Join(bctx, "bin", "shop"), "./cmd/shop"); err != nil {
		return fmt.Errorf("building the shop binary: %w", err)
	}
	// The legacy builder: this engine's BuildKit needs buildx, and the
	// image is one COPY.
	env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	b.imageBuilt = true // from here on, cleanup removes it
	if err := b.cmd(ctx, bctx, env, "docker", "build", "-q", "-t", b.image, "--label", benchLabel+"="+b.id, "."); err != nil {
		return fmt.Errorf("building image %s: %w", b.image, err)
	}
	fmt.Fprintf(b.out, "image: %s (FROM scratch + static bin/shop), built once before timing\n\n", b.image)
	return nil
}

// benchLabel marks the image this run built.
const benchLabel = "dev.devstack.bench"

// helperImageLabel marks the images devstack makes for its helper
// containers (ambassadors).
const helperImageLabel = "dev.devstack.role=ambassador"

// composeWait says whether docker-compose can wait for health itself.
func (b *bench) composeWait(ctx context.Context) string {
	out, _ := exec.CommandContext(ctx, b.o.compose, "up", "--help").Output()
	if bytes.Contains(out, []byte("--wait")) {
		return "supported, but the bench waits through engine events for both versions alike"
	}
	return "not supported by this docker-compose; the bench waits for health through engine events"
}

// cmd runs a preparation command, showing its output only on failure.
func (b *bench) cmd(ctx context.Context, dir string, env []string, name string, args ...string) error {
	c := exec.CommandContext(ctx, name, args...)
	c.Dir, c.Env = dir, env
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// stack is one compose file, run by both tools under their own project
// names.
type stack struct {
	name     string
	services int
	yaml     string // {{START}} stands for the healthcheck's start_interval
	file     string // compose's
	dsFile   string // devstack's
	// untraced is the same file with x-devstack.trace.disabled, for the
	// diagnostic "devstack untraced" runs (no proxy, no ambassadors).
	untraced string
	// deps are each service's service_healthy dependencies, which the
	// engine floor's up honours.
	deps map[string][]string
}

// write writes compose's file, with start_interval only when the engine
// honours it (docker-compose 1.x cannot load the key, and an engine that
// ignores it makes the two files mean the same), and devstack's two,
// always with start_interval.
func (s *stack) write(tmp string, startInterval time.Duration, engineHonours bool) error {
	dir := filepath.Join(tmp, s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	with := strings.ReplaceAll(s.yaml, "{{START}}", ", start_interval: "+startInterval.String())
	without := strings.ReplaceAll(s.yaml, "{{START}}", "")
	s.file = filepath.Join(dir, "compose.yaml")
	s.dsFile = filepath.Join(dir, "devstack.yaml")
	s.untraced = filepath.Join(dir, "untraced.yaml")
	if err := os.WriteFile(s.untraced, []byte("x-devstack:\n  trace: {disabled: true}\n"+with), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(s.dsFile, []byte(with), 0o644); err != nil {
		return err
	}
	if engineHonours {
		without = with
	}
	return os.WriteFile(s.file, []byte(without), 0o644)
}

// healthcheck is the same for every service of both stacks.
func (b *bench) healthcheck() string {
	return fmt.Sprintf(`{test: ["CMD", "bin/shop", "probe"], interval: %s, timeout: 3s, retries: 3, start_period: 20s{{START}}}`, b.o.interval)
}

// shopStack is examples/shop/devstack.yaml without what only devstack
// reads: same services, image, commands, dependencies and healthcheck.
func (b *bench) shopStack() *stack {
	roles := []string{"gateway", "orders", "inventory", "payments", "fraud"}
	port := map[string]int{}
	for _, r := range roles {
		port[r] = b.freePort()
	}
	url := func(svc string) string { return fmt.Sprintf("http://%s:%d", svc, port[svc]) }
	upstreams := map[string][][2]string{
		"gateway":  {{"ORDERS_URL", url("orders")}},
		"orders":   {{"INVENTORY_URL", url("inventory")}, {"PAYMENTS_URL", url("payments")}},
		"payments": {{"FRAUD_URL", url("fraud")}},
	}
	deps := map[string][]string{"gateway": {"orders"}, "orders": {"inventory", "payments"}, "payments": {"fraud"}}
	var sb strings.Builder
	sb.WriteString("# Generated by bench/compose: examples/shop as a Compose-only file.\nservices:\n")
	for _, r := range roles {
		fmt.Fprintf(&sb, "  %s:\n    image: %s\n    command: [serve, %s]\n", r, b.image, r)
		fmt.Fprintf(&sb, "    ports: [\"127.0.0.1:%d:%d\"]\n    environment:\n      PORT: \"%d\"\n", port[r], port[r], port[r])
		for _, kv := range upstreams[r] {
			fmt.Fprintf(&sb, "      %s: %s\n", kv[0], kv[1])
		}
		fmt.Fprintf(&sb, "    healthcheck: %s\n", b.healthcheck())
		if len(deps[r]) > 0 {
			sb.WriteString("    depends_on:\n")
			for _, d := range deps[r] {
				fmt.Fprintf(&sb, "      %s: {condition: service_healthy}\n", d)
			}
		}
	}
	return &stack{name: "shop", services: len(roles), yaml: sb.String(), deps: deps}
}

// wideStack is -wide copies of one service in layers of -layer.
func (b *bench) wideStack() *stack {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Generated by bench/compose: %d services in layers of %d.\nservices:\n", b.o.wide, b.o.layer)
	deps := map[string][]string{}
	for i := range b.o.wide {
		p := b.freePort()
		fmt.Fprintf(&sb, "  s%02d:\n    image: %s\n    command: [serve, fraud]\n", i+1, b.image)
		fmt.Fprintf(&sb, "    ports: [\"127.0.0.1:%d:%d\"]\n    environment: {PORT: \"%d\"}\n", p, p, p)
		fmt.Fprintf(&sb, "    healthcheck: %s\n", b.healthcheck())
		if i >= b.o.layer {
			dep := fmt.Sprintf("s%02d", i+1-b.o.layer)
			fmt.Fprintf(&sb, "    depends_on: {%s: {condition: service_healthy}}\n", dep)
			deps[fmt.Sprintf("s%02d", i+1)] = []string{dep}
		}
	}
	return &stack{name: "wide", services: b.o.wide, yaml: sb.String(), deps: deps}
}

// freePort is a TCP port that is free on 127.0.0.1 now. It comes from
// 11000-17999: below the kernel's ephemeral range (where other programs'
// outgoing connections and :0 listeners land meanwhile) and devstack's
// private ports (20000-39999), and away from the shop's 18080-18085.
func (b *bench) freePort() int {
	for range 1000 {
		p := 11000 + rand.IntN(7000)
		if b.ports[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		b.ports[p] = true
		return p
	}
	// That range is full: any free port, then.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // no loopback: nothing here can work
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// projectRef is one project the run used.
type projectRef struct{ name, file, label string }

// tool is one side of the comparison.
type tool struct {
	name    string
	helpers int // containers besides the services' (devstack's ambassadors)
	project string
	label   string // the label key that finds the project's objects
	up      func(ctx context.Context, out io.Writer) error
	down    func(ctx context.Context, out io.Writer) error
	// beforeUp and beforeDown, when not nil, run just before up and
	// down, untimed.
	beforeUp, beforeDown func(ctx context.Context) error
}

// samples are one tool's timings on one stack.
type samples struct{ up, down []time.Duration }

// result is every tool's timings on one stack; tools[0] is compose.
type result struct {
	s       *stack
	tools   []*tool
	samples map[*tool]*samples
}

// tools are compose, devstack, (with -untraced) devstack on the untraced
// variant of the file, and (with -floor) the engine floor.
func (b *bench) tools(s *stack) []*tool {
	// compose is a docker-compose project: its up, and its down.
	compose := func(name, prefix string) *tool {
		proj := prefix + "-" + s.name + "-" + b.id
		b.projects = append(b.projects, projectRef{proj, s.file, "com.docker.compose.project"})
		return &tool{
			name: name, project: proj, label: "com.docker.compose.project",
			up: func(ctx context.Context, out io.Writer) error {
				// Subscribe before up, so that no verdict is missed.
				w := b.eng.watchHealth(ctx, "com.docker.compose.project="+proj)
				defer w.stop()
				if err := b.step(ctx, out, nil, b.o.compose, "-p", proj, "-f", s.file, "up", "-d"); err != nil {
					return err
				}
				return w.wait(ctx, s.services)
			},
			down: func(ctx context.Context, out io.Writer) error {
				return b.step(ctx, out, nil, b.o.compose, "-p", proj, "-f", s.file, "down")
			},
		}
	}
	state := filepath.Join(b.tmp, "state")
	dsEnv := append(os.Environ(), "DEVSTACK_STATE_DIR="+state, "NO_COLOR=1")
	devstack := func(name, prefix, file string) *tool {
		proj := prefix + "-" + s.name + "-" + b.id
		b.projects = append(b.projects, projectRef{proj, file, "dev.devstack.project"})
		return &tool{
			name: name, project: proj, label: "dev.devstack.project",
			up: func(ctx context.Context, out io.Writer) error {
				err := b.step(ctx, out, dsEnv, b.o.devstack, "-p", proj, "-f", file, "up", "-d", "--backend", "docker")
				if err != nil {
					if log, rerr := os.ReadFile(filepath.Join(state, proj, "supervisor.log")); rerr == nil {
						err = fmt.Errorf("%w\nsupervisor.log:\n%s", err, tail(log, 30))
					}
				}
				return err
			},
			down: func(ctx context.Context, out io.Writer) error {
				return b.step(ctx, out, dsEnv, b.o.devstack, "-p", proj, "-f", file, "down")
			},
		}
	}
	out := []*tool{compose("compose", "bdc"), devstack("devstack", "bds", s.dsFile)}
	if b.o.untraced {
		out = append(out, devstack("devstack untraced", "bdu", s.untraced))
	}
	if b.o.floor {
		// The engine floor: compose's stack, brought up and taken down with
		// the least any tool must ask of the engine (floor.go). What to remove
		// is listed before the clock starts.
		fl := compose("engine floor", "bfl")
		var cs, ns []object
		fl.beforeUp = func(ctx context.Context) (err error) {
			if err := b.step(ctx, nil, nil, b.o.compose, "-p", fl.project, "-f", s.file, "up", "--no-start"); err != nil {
				return err
			}
			cs, _, err = b.eng.floorTargets(ctx, fl.label+"="+fl.project)
			return err
		}
		fl.up = func(ctx context.Context, out io.Writer) error {
			ctx, cancel := context.WithTimeout(ctx, b.o.step)
			defer cancel()
			return b.eng.floorUp(ctx, out, fl.label+"="+fl.project, cs, s.deps, b.o.startInt)
		}
		fl.beforeDown = func(ctx context.Context) (err error) {
			cs, ns, err = b.eng.floorTargets(ctx, fl.label+"="+fl.project)
			return err
		}
		fl.down = func(ctx context.Context, out io.Writer) error {
			ctx, cancel := context.WithTimeout(ctx, b.o.step)
			defer cancel()
			return b.eng.floorDown(ctx, out, cs, ns)
		}
		out = append(out, fl)
	}
	return out
}

// step runs one timed command, bounded by -step-timeout. Its output also
// goes to tee, when not nil, as it comes.
func (b *bench) step(ctx context.Context, tee io.Writer, env []string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, b.o.step)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Env = env
	c.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	c.Stdout = &buf
	if tee != nil {
		c.Stdout = io.MultiWriter(&buf, tee)
	}
	c.Stderr = c.Stdout
	err := c.Run()
	out := buf.Bytes()
	if err != nil {
		// The whole output outlives the run's temp dir, for a post-mortem.
		keep := ""
		if f, ferr := os.CreateTemp("", "devstack-bench-compose-failure-*.log"); ferr == nil {
			f.Write(out)
			f.Close()
			keep = " (whole output: " + f.Name() + ")"
		}
		return fmt.Errorf("%s %s: %w%s\n%s", filepath.Base(name), strings.Join(args, " "), err, keep, tail(out, 30))
	}
	return nil
}

func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// measure runs one untimed warm-up per tool, then -n timed rounds,
// rotating which tool goes first.
func (b *bench) measure(ctx context.Context, s *stack) (result, error) {
	tools := b.tools(s)
	res := result{s: s, tools: tools, samples: map[*tool]*samples{}}
	for _, t := range tools {
		res.samples[t] = &samples{}
	}
	fmt.Fprintf(b.out, "%s: %d services, %s (load average %s)\n", s.name, s.services, s.file, loadavg())
	for round := range b.o.n + 1 {
		k := round % len(tools)
		for _, t := range append(slices.Clone(tools[k:]), tools[:k]...) {
			up, down, err := b.once(ctx, t, s)
			if err != nil {
				return res, err
			}
			label := "warm-up"
			if round > 0 {
				label = fmt.Sprintf("run %d", round)
				smp := res.samples[t]
				smp.up = append(smp.up, up)
				smp.down = append(smp.down, down)
			}
			fmt.Fprintf(b.out, "  %-7s %-17s up %6s  down %6s\n", label, t.name, ms(up), ms(down))
		}
	}
	fmt.Fprintf(b.out, "  (load average %s, %d CPUs)\n\n", loadavg(), runtime.NumCPU())
	return res, nil
}

// once times one up and one down, and checks in between that the stack
// is whole and healthy, and after that nothing of it is left.
func (b *bench) once(ctx context.Context, t *tool, s *stack) (up, down time.Duration, err error) {
	var tl *timeline
	var out io.Writer
	if b.o.timeline {
		tl = b.eng.watchTimeline(ctx, t.label+"="+t.project, t.project)
		out = tl.writer(t.name)
	}
	if t.beforeUp != nil {
		if err := t.beforeUp(ctx); err != nil {
			return 0, 0, fmt.Errorf("%s, before up: %w", t.name, err)
		}
	}
	// Subscribed before up, so that no verdict is missed.
	hw := b.eng.watchHealth(ctx, t.label+"="+t.project)
	defer hw.stop()
	start := time.Now()
	if err := t.up(ctx, out); err != nil {
		return 0, 0, fmt.Errorf("%s up: %w", t.name, err)
	}
	up = time.Since(start)
	if tl != nil {
		tl.print(b.out, fmt.Sprintf("%s up, %s (load average %s)", t.name, ms(up), loadavg()), start.Add(up))
	}
	// Untimed: the engine's own verdicts, which may come a little after
	// devstack's.
	wctx, cancel := context.WithTimeout(ctx, b.o.step)
	err = hw.wait(wctx, s.services)
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("%s: after up, waiting for the engine to say every container is healthy: %w", t.name, err)
	}
	healthy, total, err := b.eng.health(ctx, t.label+"="+t.project)
	if err != nil {
		return 0, 0, err
	}
	if healthy != s.services || total != s.services {
		return 0, 0, fmt.Errorf("%s up returned with %d of %d service containers healthy (%d exist)", t.name, healthy, s.services, total)
	}
	n, err := b.eng.count(ctx, t.label+"="+t.project)
	if err != nil {
		return 0, 0, err
	}
	t.helpers = n - total
	if t.beforeDown != nil {
		if err := t.beforeDown(ctx); err != nil {
			return 0, 0, fmt.Errorf("%s, before down: %w", t.name, err)
		}
	}
	if b.o.timeline {
		tl = b.eng.watchTimeline(ctx, t.label+"="+t.project, t.project)
		out = tl.writer(t.name)
	}
	start = time.Now()
	if err := t.down(ctx, out); err != nil {
		return 0, 0, fmt.Errorf("%s down: %w", t.name, err)
	}
	down = time.Since(start)
	if tl != nil {
		tl.print(b.out, fmt.Sprintf("%s down, %s (load average %s)", t.name, ms(down), loadavg()), start.Add(down))
	}
	if left, err := b.eng.leftovers(ctx, t.label+"="+t.project); err != nil || left != "" {
		return 0, 0, fmt.Errorf("%s down left %s (%v)", t.name, left, err)
	}
	return up, down, nil
}

// report prints the medians, and each other tool's ratio to compose; the
// engine floor's too.
func (b *bench) report(results []result) {
	if len(results) == 0 {
		return
	}
	tw := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "stack\tservices\tstep\tcompose\t")
	for _, t := range results[0].tools[1:] {
		fmt.Fprintf(tw, "%s\t/compose\t", t.name)
	}
	fmt.Fprintln(tw)
	steps := []struct {
		name string
		of   func(*samples) []time.Duration
	}{
		{"up", func(s *samples) []time.Duration { return s.up }},
		{"down", func(s *samples) []time.Duration { return s.down }},
		{"up+down", sum},
	}
	for _, r := range results {
		for _, st := range steps {
			dc := median(st.of(r.samples[r.tools[0]]))
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t", r.s.name, r.s.services, st.name, ms(dc))
			for _, t := range r.tools[1:] {
				d := median(st.of(r.samples[t]))
				fmt.Fprintf(tw, "%s\t%.2fx\t", ms(d), float64(d)/float64(dc))
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	fmt.Fprintf(b.out, "\nmedians of %d runs per tool (after one warm-up each); target: devstack at most 0.70x of compose\n", b.o.n)
	if b.o.floor {
		fmt.Fprintln(b.out, "engine floor, a lower bound for any tool on this engine, from the bench's own process through the Engine API:")
		fmt.Fprintf(b.out, "  up: the containers created beforehand (docker-compose up --no-start, untimed), each started once its dependencies are healthy, each healthy at the engine's verdict or the bench's own probe every %s\n", b.o.startInt)
		fmt.Fprintln(b.out, "  down: every container force-removed at once, then the network, the targets listed beforehand")
	}
	for _, r := range results {
		for _, t := range r.tools {
			if t.helpers > 0 {
				fmt.Fprintf(b.out, "%s: %s ran %d helper containers (ambassadors) besides the %d services\n", r.s.name, t.name, t.helpers, r.s.services)
			}
		}
	}
}

func sum(s *samples) []time.Duration {
	out := make([]time.Duration, len(s.up))
	for i := range s.up {
		out[i] = s.up[i] + s.down[i]
	}
	return out
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loadavg is the 1, 5 and 15 minute load average: wall times on a busy
// machine (other tests using the same engine) are not comparable runs.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// cleanup removes whatever the run created: both tools' projects (by
// their own down first, then by label), and the image.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, p := range b.projects {
		// A devstack supervisor that outlived a failed run: its down stops
		// it (nothing to stop is the normal case).
		if p.label == "dev.devstack.project" {
			c := exec.CommandContext(ctx, b.o.devstack, "-p", p.name, "-f", p.file, "down")
			c.Env = append(os.Environ(), "DEVSTACK_STATE_DIR="+filepath.Join(b.tmp, "state"))
			c.WaitDelay = 5 * time.Second
			_ = c.Run()
		}
		if err := b.eng.remove(ctx, p.label+"="+p.name); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}
	if b.imageBuilt {
		if err := b.eng.removeImage(ctx, b.image); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}
	if b.helperImages != nil {
		now, err := b.eng.imagesLabelled(ctx, helperImageLabel)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
		for id := range now {
			if !b.helperImages[id] {
				if err := b.eng.removeImage(ctx, id); err != nil {
					fmt.Fprintln(os.Stderr, "cleanup:", err)
				}
			}
		}
	}
}

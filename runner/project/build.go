package project

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// build turns compose-go's model into a *Project: it checks the dependency
// graph, applies the service selection, and decodes and validates each
// service. Checks run in a fixed order (services sorted by name) so the same
// broken file always yields the same first error.
func build(cp *types.Project, src *sources, selected []string) (*Project, error) {
	x, err := decodeProjectExt(cp.Extensions, src)
	if err != nil {
		return nil, err
	}
	// The graph is checked before selection too: selection walks
	// depends_on, which must be known to be acyclic first.
	if err := checkGraph(cp, src); err != nil {
		return nil, err
	}
	if len(selected) > 0 {
		if cp, err = selectServices(cp, selected, src); err != nil {
			return nil, err
		}
	}
	p := &Project{
		Name:    cp.Name,
		Dir:     cp.WorkingDir,
		Files:   cp.ComposeFiles,
		Compose: cp,
		X:       x,
	}
	for _, name := range slices.Sorted(maps.Keys(cp.Services)) {
		svc, err := buildService(cp, name, src, x.Workdir)
		if err != nil {
			return nil, err
		}
		p.Services = append(p.Services, svc)
	}
	if err := checkHostPorts(p, src); err != nil {
		return nil, err
	}
	return p, nil
}

// checkHostPorts refuses two services that declare the same host port:
// the second could not bind it, or, behind the proxy (port_env), both
// would start and every request would go to one of them. A port is a host
// port when it is published, or when the service runs only as a process
// (which listens on its target port itself).
func checkHostPorts(p *Project, src *sources) error {
	type owner struct {
		service, spec, ip string
	}
	seen := map[string][]owner{} // "tcp/8080" → who declared it
	for _, svc := range p.Services {
		sc := svc.Compose
		processOnly := svc.X.Backend == "process" || sc.Image == "" && sc.Build == nil
		for i, port := range svc.Ports {
			if port.Published == 0 && !processOnly {
				continue
			}
			spec := portSpec(sc.Ports[i])
			key := port.Protocol + "/" + strconv.Itoa(int(port.Declared()))
			for _, o := range seen[key] {
				if o.service == svc.Name || !ipsOverlap(o.ip, port.HostIP) {
					continue
				}
				file, line := src.locate("services", svc.Name, "ports", spec)
				ofile, oline := src.locate("services", o.service, "ports", o.spec)
				return &Error{File: file, Line: line, Service: svc.Name, Key: "ports", Err: ErrBadPort,
					Msg: fmt.Sprintf("host port %d (%s) is also declared by service %q (%s:%d); two services cannot own one host port: change the published port of one of them",
						port.Declared(), port.Protocol, o.service, ofile, oline)}
			}
			seen[key] = append(seen[key], owner{svc.Name, spec, port.HostIP})
		}
	}
	return nil
}

// ipsOverlap says whether binding a and b (host IPs, "" for the default)
// can conflict: the same address, or one of them every address.
func ipsOverlap(a, b string) bool {
	any := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	return a == b || any(a) || any(b)
}

func buildService(cp *types.Project, name string, src *sources, projectWorkdir string) (*Service, error) {
	sc := cp.Services[name]
	x, err := decodeServiceExt(name, sc.Extensions, src)
	if err != nil {
		return nil, err
	}
	fail := func(sentinel error, key, msg string, path ...string) error {
		file, line := src.locate(append([]string{"services", name}, path...)...)
		return &Error{File: file, Line: line, Service: name, Key: key, Msg: msg, Err: sentinel}
	}
	switch {
	case x.Backend == "process" && x.Run.Empty():
		return nil, fail(ErrNotRunnable, "x-devstack.backend", fmt.Sprintf(
			`service %q has backend "process" but no x-devstack.run; add x-devstack.run (the command to run) or remove backend`, name), extKey, "backend")
	case x.Backend == "docker" && sc.Image == "" && sc.Build == nil:
		return nil, fail(ErrNotRunnable, "x-devstack.backend", fmt.Sprintf(
			`service %q has backend "docker" but no image: or build:; add one of them or remove backend`, name), extKey, "backend")
	case x.Run.Empty() && sc.Image == "" && sc.Build == nil && !x.External:
		return nil, fail(ErrNotRunnable, "", fmt.Sprintf(
			"service %q has no way to run; add x-devstack.run (a command to run as a process) or image:/build: (to run it in Docker), or x-devstack.external: true if you always run it yourself", name))
	}
	if err := checkHealthcheck(sc.HealthCheck); err != nil {
		return nil, fail(ErrInvalid, "healthcheck.test", err.Error(), "healthcheck", "test")
	}
	if why := restartError(sc.Restart); why != "" {
		return nil, fail(ErrInvalid, "restart", why, "restart")
	}
	if x.Backend != "docker" && !x.Run.Empty() {
		if err := checkWorkdir(cp.WorkingDir, name, x.Workdir, projectWorkdir, src); err != nil {
			return nil, err
		}
	}
	svc := &Service{Name: name, Compose: sc, X: x}
	for _, pc := range sc.Ports {
		port, why := convertPort(pc)
		if why != "" {
			spec := portSpec(pc)
			return nil, fail(ErrBadPort, "ports", portMsg(spec, why), "ports", spec)
		}
		svc.Ports = append(svc.Ports, port)
	}
	if err := portProtocols(svc, src); err != nil {
		return nil, err
	}
	for dep, cfg := range sc.DependsOn {
		if _, ok := cp.Services[dep]; !ok {
			continue // optional and disabled: checkGraph allowed it
		}
		svc.DependsOn = append(svc.DependsOn, Dependency{
			Service:   dep,
			Condition: cmp.Or(cfg.Condition, ConditionStarted),
			Required:  cfg.Required,
			Restart:   cfg.Restart,
		})
	}
	slices.SortFunc(svc.DependsOn, func(a, b Dependency) int { return strings.Compare(a.Service, b.Service) })
	return svc, nil
}

// portProtocols keys the service's per-port protocols by target port.
// The file may name a port by its target (the port the service listens
// on) or by its published port, as long as the number is one of the
// service's TCP ports.
func portProtocols(svc *Service, src *sources) error {
	if len(svc.X.PortProtocols) == 0 {
		return nil
	}
	byTarget := make(map[uint16]string, len(svc.X.PortProtocols))
	for _, n := range slices.Sorted(maps.Keys(svc.X.PortProtocols)) {
		target, ok := uint16(0), false
		for _, p := range svc.Ports {
			if p.Protocol == "tcp" && p.Target == n {
				target, ok = n, true
				break
			}
		}
		for _, p := range svc.Ports {
			if !ok && p.Protocol == "tcp" && p.Published == n {
				target, ok = p.Target, true
			}
		}
		if !ok {
			file, line := src.locate("services", svc.Name, extKey, "protocol", strconv.Itoa(int(n)))
			return &Error{File: file, Line: line, Service: svc.Name, Key: extKey + ".protocol", Err: ErrInvalid,
				Msg: fmt.Sprintf("x-devstack key \"protocol\" names port %d, which is not a TCP port of the service; %s", n, tcpPorts(svc.Ports))}
		}
		byTarget[target] = svc.X.PortProtocols[n]
	}
	svc.X.PortProtocols = byTarget
	return nil
}

// tcpPorts tells which ports' TCP ports a per-port protocol can name, for
// an error message.
func tcpPorts(ports []Port) string {
	var names []string
	for _, p := range ports {
		switch {
		case p.Protocol != "tcp":
		case p.Published != 0 && p.Published != p.Target:
			names = append(names, fmt.Sprintf("%d (host port %d)", p.Target, p.Published))
		default:
			names = append(names, strconv.Itoa(int(p.Target)))
		}
	}
	if len(names) == 0 {
		return "it has none, so remove the key"
	}
	return "name one of its ports: " + strings.Join(names, ", ")
}

// convertPort validates a parsed port; why is "" when it is fine.
func convertPort(pc types.ServicePortConfig) (p Port, why string) {
	p = Port{HostIP: cmp.Or(pc.HostIP, "127.0.0.1"), Protocol: cmp.Or(pc.Protocol, "tcp")}
	if pc.Target < 1 || pc.Target > 65535 {
		return p, fmt.Sprintf("container port %d is out of range", pc.Target)
	}
	p.Target = uint16(pc.Target)
	if pc.Published != "" {
		if lo, hi, ok := strings.Cut(pc.Published, "-"); ok {
			// A range: the port is one of it, picked when the stack
			// starts (PickPorts), as Compose does.
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			switch {
			case err1 != nil || err2 != nil:
				return p, fmt.Sprintf("published range %q is not two numbers", pc.Published)
			case l < 1 || h > 65535 || l > h:
				return p, fmt.Sprintf("published range %s is out of order or out of range", pc.Published)
			}
			p.Published, p.Range = uint16(l), pc.Published
			if p.Protocol = cmp.Or(pc.Protocol, "tcp"); p.Protocol != "tcp" && p.Protocol != "udp" {
				return p, fmt.Sprintf("protocol %q is not tcp or udp", p.Protocol)
			}
			return p, ""
		}
		n, err := strconv.Atoi(pc.Published)
		switch {
		case err != nil:
			return p, fmt.Sprintf("published port %q is not a number", pc.Published)
		case n < 1 || n > 65535:
			return p, fmt.Sprintf("published port %d is out of range", n)
		}
		p.Published = uint16(n)
	}
	if p.Protocol != "tcp" && p.Protocol != "udp" {
		return p, fmt.Sprintf("protocol %q is not tcp or udp", p.Protocol)
	}
	return p, ""
}

// portSpec renders a parsed port back in short syntax for messages.
func portSpec(pc types.ServicePortConfig) string {
	s := strconv.FormatUint(uint64(pc.Target), 10)
	if pc.Published != "" {
		s = pc.Published + ":" + s
	}
	if pc.HostIP != "" {
		s = pc.HostIP + ":" + s
	}
	if pc.Protocol != "" && pc.Protocol != "tcp" {
		s += "/" + pc.Protocol
	}
	return s
}

// checkHealthcheck enforces what compose's consistency check would (we skip
// that check, see Load).
func checkHealthcheck(hc *types.HealthCheckConfig) error {
	if hc == nil || hc.Disable || len(hc.Test) == 0 {
		return nil
	}
	switch hc.Test[0] {
	case "NONE":
		return nil
	case "CMD", "CMD-SHELL":
		if len(hc.Test) < 2 || strings.TrimSpace(strings.Join(hc.Test[1:], "")) == "" {
			return fmt.Errorf("healthcheck test %q has no command; add the command after %q", hc.Test[0], hc.Test[0])
		}
		return nil
	}
	return fmt.Errorf(`healthcheck test starts with %q; start the list with "CMD" or "CMD-SHELL" (or write a plain string, run by the shell)`, hc.Test[0])
}

// checkGraph checks that every depends_on names a service that will run
// and that depends_on has no cycle.
func checkGraph(cp *types.Project, src *sources) error {
	names := slices.Sorted(maps.Keys(cp.Services))
	for _, name := range names {
		for _, dep := range slices.Sorted(maps.Keys(cp.Services[name].DependsOn)) {
			if _, ok := cp.Services[dep]; ok {
				continue
			}
			cfg := cp.Services[name].DependsOn[dep]
			file, line := src.locate("services", name, "depends_on", dep)
			e := &Error{File: file, Line: line, Service: name, Key: "depends_on", Err: ErrUnknownService}
			if disabled, ok := cp.DisabledServices[dep]; ok {
				if !cfg.Required {
					continue
				}
				e.Msg = fmt.Sprintf("service %q depends on %q, which is disabled by its profiles (%s); pass --profile %s or remove %q from depends_on",
					name, dep, strings.Join(disabled.Profiles, ", "), firstOr(disabled.Profiles, "<profile>"), dep)
				return e
			}
			e.Msg = fmt.Sprintf("service %q depends on %q, which is not defined; define service %q or remove it from depends_on%s",
				name, dep, dep, didYouMeanService(dep, names))
			return e
		}
	}
	if cycle := findCycle(cp, names); cycle != nil {
		file, line := src.locate("services", cycle[0], "depends_on", cycle[1])
		return &Error{File: file, Line: line, Service: cycle[0], Key: "depends_on", Err: ErrCycle,
			Msg: fmt.Sprintf("depends_on forms a cycle %s; remove one of these depends_on entries", strings.Join(cycle, " -> "))}
	}
	return nil
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}

func didYouMeanService(name string, names []string) string {
	if c := closest(name, names); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// findCycle returns a dependency cycle as [a b c a], rotated to start at its
// smallest name so the message does not depend on where the walk began, or
// nil when the graph is acyclic.
func findCycle(cp *types.Project, names []string) []string {
	const (
		unvisited = iota
		onStack
		done
	)
	state := map[string]int{}
	var stack, cycle []string
	var visit func(string) bool
	visit = func(n string) bool {
		state[n] = onStack
		stack = append(stack, n)
		for _, dep := range slices.Sorted(maps.Keys(cp.Services[n].DependsOn)) {
			if _, ok := cp.Services[dep]; !ok {
				continue
			}
			switch state[dep] {
			case onStack:
				cycle = slices.Clone(stack[slices.Index(stack, dep):])
				return true
			case unvisited:
				if visit(dep) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return false
	}
	for _, n := range names {
		if state[n] == unvisited && visit(n) {
			least := slices.Index(cycle, slices.Min(cycle))
			cycle = append(cycle[least:], cycle[:least]...)
			return append(cycle, cycle[0])
		}
	}
	return nil
}

// selectServices keeps the named services and their transitive
// dependencies, enabling profile-gated ones that are named explicitly, as
// `docker compose up svc` does.
func selectServices(cp *types.Project, selected []string, src *sources) (*types.Project, error) {
	known := slices.Sorted(maps.Keys(cp.Services))
	for _, name := range selected {
		_, enabled := cp.Services[name]
		_, disabled := cp.DisabledServices[name]
		if !enabled && !disabled {
			return nil, &Error{File: src.display(src.primary()), Service: name, Err: ErrUnknownService,
				Msg: fmt.Sprintf("service %q is not defined%s; choose one of: %s", name, didYouMeanService(name, known), strings.Join(known, ", "))}
		}
	}
	cp, err := cp.WithServicesEnabled(selected...)
	if err != nil {
		return nil, fmt.Errorf("enabling services: %w", err)
	}
	if err := checkGraph(cp, src); err != nil {
		return nil, err
	}
	cp, err = cp.WithSelectedServices(selected)
	if err != nil {
		return nil, fmt.Errorf("selecting services: %w", err)
	}
	return cp, nil
}

// Compose's healthcheck defaults (docker's, as documented in the Compose
// specification), applied where the file leaves a field out.
const (
	defaultHealthInterval      = 30 * time.Second
	defaultHealthTimeout       = 30 * time.Second
	defaultHealthRetries       = 3
	defaultHealthStartInterval = 5 * time.Second
)

// Healthcheck returns the service's healthcheck with Compose's defaults
// filled in, or nil when there is none or it is disabled (test: ["NONE"] or
// disable: true). A healthcheck that sets only timings and no test (it
// tunes the image's own HEALTHCHECK) also gives nil: devstack has no
// command to run for it.
func (s *Service) Healthcheck() *Healthcheck {
	hc := s.Compose.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		return nil
	}
	h := &Healthcheck{
		Interval:      durationOr(hc.Interval, defaultHealthInterval),
		Timeout:       durationOr(hc.Timeout, defaultHealthTimeout),
		Retries:       defaultHealthRetries,
		StartPeriod:   durationOr(hc.StartPeriod, 0),
		StartInterval: durationOr(hc.StartInterval, defaultHealthStartInterval),
	}
	if hc.Retries != nil {
		h.Retries = int(*hc.Retries)
	}
	switch hc.Test[0] {
	case "CMD":
		h.Test = Command{Args: slices.Clone(hc.Test[1:])}
	case "CMD-SHELL":
		h.Test = Command{Args: []string{strings.Join(hc.Test[1:], " ")}, Shell: true}
	default:
		// Not produced by Load (checkHealthcheck rejects it); a list without
		// a prefix is taken as a direct command.
		h.Test = Command{Args: slices.Clone(hc.Test)}
	}
	return h
}

func durationOr(d *types.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}

// Service returns the enabled service called name, or nil.
func (p *Project) Service(name string) *Service {
	for _, s := range p.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// WithDependencies is names plus every service they depend on,
// transitively, in the project's order: what `up names` starts. Every
// service when names is empty; unknown names are left out.
func (p *Project) WithDependencies(names []string) []string {
	in := map[string]bool{}
	var visit func(s *Service)
	visit = func(s *Service) {
		if s == nil || in[s.Name] {
			return
		}
		in[s.Name] = true
		for _, d := range s.DependsOn {
			visit(p.Service(d.Service))
		}
	}
	for _, n := range names {
		visit(p.Service(n))
	}
	var out []string
	for _, s := range p.Services {
		if len(names) == 0 || in[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out
}

// Render prints the resolved Compose model, x-devstack extensions included,
// the way `docker compose config` does; format is "yaml" or "json". It is
// what `devstack config` prints.
func (p *Project) Render(format string) ([]byte, error) {
	switch format {
	case "yaml", "":
		return p.Compose.MarshalYAML()
	case "json":
		return p.renderJSON()
	}
	return nil, fmt.Errorf("rendering project: unknown format %q, want yaml or json", format)
}

// renderJSON is compose-go's JSON with the services' x-* extensions put
// back: ServiceConfig's JSON encoding drops them (json:"-"), while its YAML
// keeps them, and `devstack config --format json` must show x-devstack.
func (p *Project) renderJSON() ([]byte, error) {
	data, err := p.Compose.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("rendering project as json: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("rendering project as json: %w", err)
	}
	services, _ := doc["services"].(map[string]any)
	for name, sc := range p.Compose.Services {
		svc, ok := services[name].(map[string]any)
		if !ok {
			continue
		}
		for k, v := range sc.Extensions {
			svc[k] = v
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

// restartError says what is wrong with a restart: value, or "" when it
// is one of Compose's policies (the runner parses them the same way, see
// runner.ParseRestart): checked at load, so that `config` refuses what
// `up` would, at the file and line.
func restartError(s string) string {
	switch s {
	case "", "no", "always", "unless-stopped", "on-failure":
		return ""
	}
	if rest, ok := strings.CutPrefix(s, "on-failure:"); ok {
		if n, err := strconv.Atoi(rest); err != nil || n < 0 {
			return fmt.Sprintf("restart %q: the retry count must be a whole number, e.g. on-failure:3", s)
		}
		return ""
	}
	return fmt.Sprintf("restart %q is not a restart policy; use no, always, on-failure[:N] or unless-stopped", s)
}

// checkWorkdir refuses a process service whose working directory (its
// own x-devstack.workdir, else the project's, else the project
// directory) is missing: the process could not start in it, and the
// system would only say that the shell was not found.
func checkWorkdir(dir, name, own, projectWorkdir string, src *sources) error {
	wd, path := own, []string{"services", name, extKey, "workdir"}
	if wd == "" {
		wd, path = projectWorkdir, []string{extKey, "workdir"}
	}
	if wd == "" {
		return nil // the project directory: it holds the file
	}
	abs := wd
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(dir, wd)
	}
	fi, err := os.Stat(abs)
	if err == nil && fi.IsDir() {
		return nil
	}
	why := "does not exist"
	if err == nil {
		why = "is not a directory"
	} else if !errors.Is(err, fs.ErrNotExist) {
		why = "cannot be used: " + errText(err)
	}
	file, line := src.locate(path...)
	return &Error{File: file, Line: line, Service: name, Key: extKey + ".workdir", Err: ErrInvalid,
		Msg: fmt.Sprintf("workdir %q (%s) %s; create it, or correct x-devstack.workdir (relative to the project directory %s)", wd, abs, why, dir)}
}

package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/devstack/devstack/runner/docker"
	"github.com/devstack/devstack/runner/process"
	"github.com/devstack/devstack/runner/project"
)

// keyWarnings says, per service, which Compose keys its backend does not
// honour and what happens instead, so that no key is dropped silently.
// backendOf names the service's backend ("process" or "docker").
//
// A service that says both how to run as a process (x-devstack.run) and
// as a container (image: or build:) runs on either backend: its image,
// build, command, entrypoint, pull_policy and platform are what its
// container runs, so when it runs as a process they are not ignored but
// kept for the other backend. They are not warned about; dual lists
// those services (config notes them once).
func keyWarnings(p *project.Project, backendOf func(*project.Service) string) (warnings []string, dual []dualService) {
	var out []string
	for _, s := range p.Services {
		be := backendOf(s)
		ignores, as := docker.Ignores, "a container"
		if be == "process" {
			ignores, as = process.Ignores, "a process"
		}
		both := be == "process" && process.CanRun(s) && docker.CanRun(s)
		var order []string
		var kept []string
		byWhy := map[string][]string{}
		for _, k := range s.Keys() {
			why := ignores(k)
			if why == "" {
				continue
			}
			if both && forContainer(k) {
				if k, _, _ = strings.Cut(k, "."); !slices.Contains(kept, k) {
					kept = append(kept, k)
				}
				continue
			}
			if _, ok := byWhy[why]; !ok {
				order = append(order, why)
			}
			byWhy[why] = append(byWhy[why], k)
		}
		if len(kept) > 0 {
			dual = append(dual, dualService{s.Name, kept})
		}
		if len(order) == 0 {
			continue
		}
		parts := make([]string, 0, len(order))
		for _, why := range order {
			parts = append(parts, strings.Join(byWhy[why], ", ")+" ("+why+")")
		}
		out = append(out, fmt.Sprintf("service %q runs as %s, which does not honour: %s", s.Name, as, strings.Join(parts, "; ")))
	}
	return out, dual
}

// dualService is a service that runs as a process, with keys that say
// what it runs as a container.
type dualService struct {
	name string
	keys []string // top-level keys: image, build, command...
}

// forContainer reports whether key says what a container runs (see
// keyWarnings).
func forContainer(key string) bool {
	switch key {
	case "image", "command", "entrypoint", "pull_policy", "platform":
		return true
	}
	return strings.HasPrefix(key, "build.")
}

// dualNote is config's one line about the services that run as processes
// and keep container keys for the docker backend; "" when there are none.
func dualNote(dual []dualService) string {
	if len(dual) == 0 {
		return ""
	}
	var names, keys []string
	for _, d := range dual {
		names = append(names, d.name)
		for _, k := range d.keys {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return fmt.Sprintf("note: %s run x-devstack.run as processes; their %s are what they run as containers (`devstack up --backend docker`), not used by a process",
		strings.Join(names, ", "), strings.Join(keys, ", "))
}

// plannedBackend is the backend up would choose for s when the engine
// answers, without asking the engine: what config reports on.
func plannedBackend(p *project.Project, s *project.Service, flag string) string {
	w := s.X.Backend
	if w == "" {
		w = flag
	}
	if w == "" {
		w = p.X.Backend
	}
	switch {
	case w == "process" && (process.CanRun(s) || !docker.CanRun(s)):
		return "process"
	case w == "docker" && (docker.CanRun(s) || !process.CanRun(s)):
		return "docker"
	case docker.CanRun(s):
		return "docker"
	}
	return "process"
}

// warnKeys prints keyWarnings; with note, also the line about services
// that run as processes and keep container keys (config says it, up
// does not).
func (g *globalOptions) warnKeys(p *project.Project, backendOf func(*project.Service) string, note bool) {
	warnings, dual := keyWarnings(p, backendOf)
	for _, w := range warnings {
		fmt.Fprintln(g.stderr, "warning:", w)
	}
	if n := dualNote(dual); note && n != "" {
		fmt.Fprintln(g.stderr, n)
	}
}

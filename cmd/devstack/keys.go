package main

import (
	"fmt"
	"strings"

	"github.com/devstack/devstack/runner/docker"
	"github.com/devstack/devstack/runner/process"
	"github.com/devstack/devstack/runner/project"
)

// keyWarnings says, per service, which Compose keys its backend does not
// honour and what happens instead, so that no key is dropped silently.
// backendOf names the service's backend ("process" or "docker").
func keyWarnings(p *project.Project, backendOf func(*project.Service) string) []string {
	var out []string
	for _, s := range p.Services {
		be := backendOf(s)
		ignores, as := docker.Ignores, "a container"
		if be == "process" {
			ignores, as = process.Ignores, "a process"
		}
		var order []string
		byWhy := map[string][]string{}
		for _, k := range s.Keys() {
			why := ignores(k)
			if why == "" {
				continue
			}
			if _, ok := byWhy[why]; !ok {
				order = append(order, why)
			}
			byWhy[why] = append(byWhy[why], k)
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
	return out
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

// warnKeys prints keyWarnings.
func (g *globalOptions) warnKeys(p *project.Project, backendOf func(*project.Service) string) {
	for _, w := range keyWarnings(p, backendOf) {
		fmt.Fprintln(g.stderr, "warning:", w)
	}
}

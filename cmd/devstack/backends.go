package main

import (
	"fmt"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/process"
	"github.com/devstack/devstack/runner/project"
)

// backendFor picks each service's backend: x-devstack.backend when set,
// else the process backend for services that say how to run as a process.
func backendFor(p *project.Project) func(*project.Service) (runner.Backend, error) {
	proc := &process.Backend{}
	return func(s *project.Service) (runner.Backend, error) {
		want := s.X.Backend
		if want == "" {
			want = p.X.Backend
		}
		switch {
		case want == "docker" || (want == "" && !process.CanRun(s)):
			return nil, fmt.Errorf("service %q needs the Docker backend (it has image:/build: but no x-devstack.run), which this version of devstack does not have; add x-devstack.run to run it as a process", s.Name)
		case !process.CanRun(s):
			return nil, fmt.Errorf("service %q is set to run as a process but has no x-devstack.run; add x-devstack.run with its command line", s.Name)
		}
		return proc, nil
	}
}

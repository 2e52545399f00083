package runner

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Command is a one-off command run in a service's running instance (a
// develop.watch sync+exec rule's).
type Command struct {
	Argv []string
	// Dir is where it runs: for a process, a directory on the host (""
	// is its workdir); in a container, a path in it ("" is its own).
	Dir string
	// Env is KEY=VALUE added to the service's environment.
	Env []string
	// User runs it as this user in a container ("" is the container's);
	// a process backend refuses it.
	User string
}

// Commander is implemented by instances that can run a one-off command
// in themselves: a process's in its workdir and environment, a
// container's through the engine's exec (in each replica).
type Commander interface {
	RunCommand(ctx context.Context, c Command, stdout, stderr io.Writer) (exitCode int, err error)
}

// RunIn runs cmds, in order, in the running instance of service, their
// output going to the service's log. The first that fails (an exit code
// other than 0 included) ends it with an error naming it; the error goes
// to the log too.
func (r *Runner) RunIn(ctx context.Context, service string, cmds []Command) error {
	sel, err := r.lookup([]string{service})
	if err != nil {
		return err
	}
	s := sel[0]
	r.mu.Lock()
	inst := s.inst
	r.mu.Unlock()
	if inst == nil {
		return fmt.Errorf("service %q is not running; nothing to run a command in", service)
	}
	cm, ok := inst.(Commander)
	if !ok {
		return fmt.Errorf("service %q runs on the %s backend, which cannot run a command in its instances", service, s.backend.Name())
	}
	for _, c := range cmds {
		if len(c.Argv) == 0 {
			continue
		}
		code, err := cm.RunCommand(ctx, c, r.opts.Logs.Writer(service, "out"), r.opts.Logs.Writer(service, "err"))
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		if err != nil {
			err = fmt.Errorf("running %q in service %q (%s %s): %w", strings.Join(c.Argv, " "), service, s.backend.Name(), inst.ID(), err)
			r.event(service, "%v", err)
			return err
		}
	}
	return nil
}

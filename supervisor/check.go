package supervisor

import (
	"io"

	"github.com/devstack/devstack/runner"
)

// Check runs what Start checks of the project file (its plugins and their
// executables, the fault scenario, restart policies, stop signals,
// depends_on conditions, the trace formats) without taking the lock,
// binding a port or starting anything. up -d runs it on an edited file
// before the running stack hands over, so that a file the new supervisor
// would refuse leaves the running stack as it is. Ports are not checked:
// the running stack holds them (see the CLI's portsForHandover).
func Check(opts Options) error {
	p := opts.Project
	if err := checkName(p.Name); err != nil {
		return err
	}
	if _, err := pluginSpecs(p, opts.Builtin != nil, opts.BackendFor, false); err != nil {
		return err
	}
	if _, err := runner.New(p, runner.Options{BackendFor: opts.BackendFor, Logs: discardSink{}, External: opts.External}); err != nil {
		return err
	}
	_, err := traceOptions(p, nil)
	return err
}

type discardSink struct{}

func (discardSink) Writer(string, string) io.Writer { return io.Discard }

package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner"
)

// newLifecycleCmd builds start, stop and restart: each sends its action to
// the running supervisor.
func newLifecycleCmd(g *globalOptions, action, short string) *cobra.Command {
	var timeout stopTimeout
	long := short + `.

With no service named, it applies to every service the stack has started,
as docker compose's applies to the containers it created: a service that
no up asked for (one you run yourself, say) is left as it is.`
	if action != "start" {
		long += `

Each service gets its stop_signal, then SIGKILL after its stop_grace_period
(default 10s). -t/--timeout SECONDS gives every service this command stops
that many seconds instead, for this command only, as docker compose's
does: -t 0 kills right after the signal.`
	}
	cmd := &cobra.Command{
		Use:               action + " [SERVICE...]",
		Short:             short,
		Long:              long,
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
			return c.Do(ctx, action, names, timeout.options(), func(m control.Message) { printProgress(g.stderr, m) })
		},
	}
	if action != "start" {
		cmd.Flags().VarP(&timeout, "timeout", "t", timeoutUsage)
	}
	return cmd
}

// timeoutUsage is -t/--timeout's line in --help.
const timeoutUsage = "seconds each service gets between its stop_signal and SIGKILL, in place of its stop_grace_period (0: SIGKILL right after the signal)"

// stopTimeout is docker compose's -t/--timeout of stop, restart, down and
// up: whole seconds between a service's stop signal and SIGKILL, in place
// of its stop_grace_period, for one command. Unset (nil), each service
// keeps its own: the flag's absence must change nothing.
type stopTimeout struct{ grace *time.Duration }

func (t *stopTimeout) Type() string { return "seconds" }

func (t *stopTimeout) String() string {
	if t.grace == nil {
		return "" // no default shown in --help: each service's own
	}
	return strconv.FormatInt(int64(*t.grace/time.Second), 10)
}

func (t *stopTimeout) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err == nil && n < 0:
		return errors.New("want 0 or more seconds; 0 sends SIGKILL right after the stop signal")
	case err == nil && n > math.MaxInt64/int64(time.Second):
		return errors.New("want fewer seconds: that is centuries")
	case err == nil:
		d := time.Duration(n) * time.Second
		t.grace = &d
		return nil
	}
	// A duration with a unit, as devstack's other flags take: say what
	// compose's flag takes instead, the same time where it is whole seconds.
	if d, err := time.ParseDuration(s); err == nil && d >= 0 && d%time.Second == 0 {
		return fmt.Errorf("want whole seconds without a unit, as docker compose takes them: -t %d", d/time.Second)
	}
	return errors.New("want whole seconds, as docker compose takes them (-t 0: SIGKILL right after the stop signal, -t 5: five seconds to stop)")
}

// options are the runner's stop options for the flag.
func (t *stopTimeout) options() runner.StopOptions { return runner.StopOptions{Grace: t.grace} }

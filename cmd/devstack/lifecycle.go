package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner"
)

// newLifecycleCmd builds start, stop and restart: each sends its action to
// the running supervisor.
func newLifecycleCmd(g *globalOptions, action, short string) *cobra.Command {
	return &cobra.Command{
		Use:   action + " [SERVICE...]",
		Short: short,
		Long: short + `.

With no service named, it applies to every service the stack has started,
as docker compose's applies to the containers it created: a service that
no up asked for (one you run yourself, say) is left as it is.`,
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
			return c.Do(ctx, action, names, runner.StopOptions{}, func(m control.Message) { printProgress(g.stderr, m) })
		},
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner/docker"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/supervisor"
)

// downTimeout bounds how long down waits for the supervisor to exit after
// it has stopped every service.
const downTimeout = 30 * time.Second

func newDownCmd(g *globalOptions) *cobra.Command {
	var (
		volumes bool
		timeout stopTimeout
	)
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the stack and its supervisor; nothing of it is left running",
		Long: `down stops every service in reverse dependency order (stop_signal, then
SIGKILL after stop_grace_period, default 10s), then the background
supervisor. -t/--timeout SECONDS gives every service that many seconds
instead, for this down only, as docker compose's does: -t 0 kills right
after the signal.

Containers and the project's networks are removed; named volumes only with
-v. If devstack was killed and left processes behind, down finds them by
the marker devstack puts in their environment and stops them (it never
touches an unrelated process that reused a pid), and removes containers and
networks carrying the project's labels.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := g.load(ctx, nil)
			if err != nil {
				return err
			}
			c, dir, err := g.client(ctx, p)
			if errors.Is(err, control.ErrNotRunning) {
				n, err := supervisor.CleanOffline(ctx, p.Name)
				if err != nil {
					return err
				}
				removed, byCompose, err := cleanContainers(ctx, p, volumes)
				if err != nil {
					return err
				}
				var left []string
				if n > 0 {
					left = append(left, fmt.Sprintf("stopped %d process(es)", n))
				}
				if removed-byCompose > 0 {
					left = append(left, fmt.Sprintf("removed %d container(s)", removed-byCompose))
				}
				if len(left) > 0 {
					fmt.Fprintf(g.stderr, "devstack: %s was not running; %s left by a devstack that was killed\n", p.Name, strings.Join(left, " and "))
				}
				if byCompose > 0 {
					fmt.Fprintf(g.stderr, "devstack: removed %d container(s) that docker compose made for %s\n", byCompose, p.Name)
				}
				if len(left) == 0 && byCompose == 0 {
					fmt.Fprintf(g.stderr, "devstack: %s is not running; nothing of it was left to clean up\n", p.Name)
				}
				return nil
			}
			if err != nil {
				return err
			}
			if err := c.Down(ctx, volumes, timeout.options(), func(m control.Message) { printProgress(g.stderr, m) }); err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, downTimeout)
			defer cancel()
			if err := supervisor.WaitUnlocked(wctx, dir); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "devstack: %s stopped\n", p.Name)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "also remove the project's named volumes")
	cmd.Flags().VarP(&timeout, "timeout", "t", timeoutUsage)
	cmd.Flags().Bool("remove-orphans", false, "accepted for docker compose's habit: down always removes every container of the project")
	return cmd
}

// cleanContainers removes what a killed devstack left in Docker, and what
// docker compose made for the project, when the project has container
// services and an engine answers, and says how many containers it
// removed, and how many of those docker compose had made.
func cleanContainers(ctx context.Context, p *project.Project, volumes bool) (removed, byCompose int, err error) {
	uses := false
	for _, s := range p.Services {
		uses = uses || docker.CanRun(s)
	}
	if !uses {
		return 0, 0, nil
	}
	d, err := docker.New(ctx)
	if err != nil {
		return 0, 0, nil // no engine: nothing of ours can be running there
	}
	defer d.Close()
	n, err := d.Containers(ctx, p.Name)
	if err != nil {
		return 0, 0, err
	}
	made, err := d.ComposeMade(ctx, p.Name, p.WithDependencies(nil))
	if err != nil {
		return 0, 0, err
	}
	return n, len(made), d.Down(ctx, p.Name, volumes)
}

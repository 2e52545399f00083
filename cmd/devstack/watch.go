package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/supervisor"
)

func newWatchCmd(g *globalOptions) *cobra.Command {
	var noColor, timestamps bool
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Hot reload: follow the develop.watch rules of a running stack",
		Long: `watch makes the running stack follow your edits, as docker compose watch
does, with the rules of each service's develop.watch section (sync, rebuild,
restart, sync+restart, sync+exec). A rebuild or restart starts the new
instance beside the old one on a new private port, waits for its
healthcheck (or its port), switches the proxy to it and stops the old one:
no request fails. A failed build keeps the old instance serving.

It prints the merged log (each reload with its time and the file that
caused it) until Ctrl-C, which stops watching and leaves the stack running.
up --watch starts the stack watching.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p, err := g.load(ctx, nil)
			if err != nil {
				return err
			}
			c, _, err := g.client(ctx, p)
			if errors.Is(err, control.ErrNotRunning) {
				return fmt.Errorf("%s is not running; `devstack up --watch` starts it watching", p.Name)
			}
			if err != nil {
				return err
			}
			st, err := c.Watch(ctx, true)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "devstack: watching %d develop.watch rule(s) of %s; Ctrl-C stops watching (the stack keeps running)\n", st.Rules, p.Name)
			pr := newPrinter(g.stdout, noColor, timestamps, serviceList(p))
			err = c.Logs(ctx, control.LogQuery{Follow: true, Since: time.Now()}, func(l control.LogLine) { pr.line(l.Time, l.Service, l.Stream, l.Text) })
			off, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, werr := c.Watch(off, false); werr != nil && !errors.Is(werr, control.ErrNotRunning) {
				fmt.Fprintf(g.stderr, "devstack: could not stop watching: %v\n", werr)
			} else {
				fmt.Fprintf(g.stderr, "devstack: stopped watching %s\n", p.Name)
			}
			if ctx.Err() != nil {
				return nil // Ctrl-C
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&noColor, "no-color", false, "no colours in the log prefix")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	return cmd
}

// startWatching asks the running supervisor of the project to watch (up
// -d --watch).
func startWatching(ctx context.Context, g *globalOptions, names []string) error {
	p, err := g.load(ctx, names)
	if err != nil {
		return err
	}
	c, _, err := g.client(ctx, p)
	if err != nil {
		return err
	}
	st, err := c.Watch(ctx, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "devstack: watching %d develop.watch rule(s); `devstack logs -f` shows each reload\n", st.Rules)
	return nil
}

// watchInProcess starts watching in a foreground up's own supervisor.
func watchInProcess(ctx context.Context, sup *supervisor.Supervisor) string {
	if _, err := sup.Watch(ctx, true); err != nil {
		return "devstack: not watching: " + err.Error()
	}
	return "devstack: watching the develop.watch rules; saves reload their services"
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/supervisor"
)

type psOptions struct {
	format   string
	quiet    bool // -q: the ids only
	services bool // --services: the names only
	all      bool // -a: accepted; ps lists stopped services too
}

func newPsCmd(g *globalOptions) *cobra.Command {
	o := &psOptions{}
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List the services of the running stack, with state, health, restarts and last exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.format != "table" && o.format != "json" {
				return fmt.Errorf("--format %q: use table or json", o.format)
			}
			p, err := g.load(cmd.Context(), nil)
			if err != nil {
				return err
			}
			var st []runner.ServiceStatus
			c, dir, err := g.client(cmd.Context(), p)
			switch {
			case errors.Is(err, control.ErrNotRunning):
				fmt.Fprintf(g.stderr, "devstack: %s is not running\n", p.Name)
			case err != nil:
				return err
			default:
				if st, err = c.Ps(cmd.Context()); err != nil {
					return err
				}
				if old, ok := supervisor.RunningConfig(dir); ok {
					if what := describeChanges(old, p.Fingerprint()); what != "" {
						fmt.Fprintf(g.stderr, "devstack: the file changed since %s started (%s); `devstack up -d` applies it\n", p.Name, what)
					}
				}
			}
			if o.quiet || o.services {
				for _, s := range st {
					switch {
					case o.services:
						fmt.Fprintln(g.stdout, s.Name)
					case s.ID != "":
						fmt.Fprintln(g.stdout, s.ID)
					}
				}
				return nil
			}
			if o.format == "json" {
				if st == nil {
					st = []runner.ServiceStatus{}
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(st)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tBACKEND\tSTATE\tHEALTH\tID\tRESTARTS\tRELOADS\tLAST EXIT\tUPTIME\tPORTS")
			for _, s := range st {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Backend, s.State, dash(string(s.Health)),
					dash(s.ID), s.Restarts, reloads(s), lastExit(s.LastExit), uptime(s), dash(strings.Join(s.Ports, ",")))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, s := range st {
				if s.ReloadError != "" {
					fmt.Fprintf(g.stdout, "warning: %s\n", s.ReloadError)
				}
				for _, w := range s.Warnings {
					fmt.Fprintf(g.stdout, "warning: %s\n", w)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.format, "format", "table", "output format: table or json")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print only the ids (pids and container ids) of running services")
	cmd.Flags().BoolVar(&o.services, "services", false, "print only the service names")
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "accepted for docker compose's habit: ps always lists every service, stopped ones too")
	return cmd
}

// reloads is the RELOADS column: how many hot reloads went through, and
// their median time from the change seen to the new code answering.
func reloads(s runner.ServiceStatus) string {
	if s.Reloads == 0 {
		if s.ReloadError != "" {
			return "failed"
		}
		return "-"
	}
	out := fmt.Sprintf("%d p50 %s", s.Reloads, s.ReloadP50.Round(time.Millisecond))
	if s.ReloadError != "" {
		out += " (last failed)"
	}
	return out
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func lastExit(e *runner.ExitInfo) string {
	switch {
	case e == nil:
		return "-"
	case e.Signal != "":
		return e.Signal
	case e.Error != "":
		return "error"
	}
	return fmt.Sprint(e.Code)
}

func uptime(s runner.ServiceStatus) string {
	if s.StartedAt == nil || (s.State != runner.StateRunning && s.State != runner.StateStopping) {
		return "-"
	}
	return time.Since(*s.StartedAt).Round(time.Second).String()
}

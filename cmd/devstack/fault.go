package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/plugins/faultinject"
	"github.com/devstack/devstack/plugins/reload"
	"github.com/devstack/devstack/proxy/fault"
)

func newFaultCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Inject faults into the running stack: latency, errors, resets, hangs, slow bodies",
		Long: `Inject faults into the hops to one service, at runtime, through the proxy:

  devstack fault add payments --latency 200ms --jitter 20ms --route '/charge*' --probability 0.2 --for 5m
  devstack fault add inventory --abort 503 --caller orders
  devstack fault ls
  devstack fault rm f1
  devstack fault clear
  devstack fault apply chaos.yaml     # a scenario file: replaces every fault

Each matching request draws its own chance (--probability), on kept-alive
connections too. Every injected fault is recorded on the hop's span.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newFaultAddCmd(g), newFaultLsCmd(g), newFaultRmCmd(g), newFaultClearCmd(g), newFaultApplyCmd(g))
	return cmd
}

// faultClient connects to the running stack's supervisor.
func (g *globalOptions) faultClient(ctx context.Context) (*control.Client, error) {
	p, err := g.load(ctx, nil)
	if err != nil {
		return nil, err
	}
	c, _, err := g.client(ctx, p)
	if errors.Is(err, control.ErrNotRunning) {
		return nil, fmt.Errorf("%s is not running; faults apply to a running stack (`devstack up -d` first)", p.Name)
	}
	return c, err
}

func newFaultAddCmd(g *globalOptions) *cobra.Command {
	var s fault.Spec
	var hang bool
	var hangFor, timeout time.Duration
	var bandwidth, limitData string
	cmd := &cobra.Command{
		Use:   "add SERVICE",
		Short: "Add a fault on the hops to SERVICE (one fault kind per rule)",
		Example: `  devstack fault add payments --latency 200ms --jitter 20ms --distribution normal
  devstack fault add payments --abort 503 --body 'try later' --probability 0.1
  devstack fault add orders --grpc-abort 14 --method POST
  devstack fault add payments --reset --first 3
  devstack fault add payments --hang            # until the client gives up
  devstack fault add payments --hang-for 5s
  devstack fault add gateway --bandwidth 10KB
  devstack fault add gateway --slow-body 100ms --chunk 16
  devstack fault add db --timeout 5s            # TCP: silence, then close (0: never close)
  devstack fault add db --port-down
  devstack fault add payments --latency 1s --header 'X-Tenant=acme' --direction response`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.serviceNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			s.Service = args[0]
			if hang || hangFor > 0 {
				s.Hang = &fault.Toggle{On: true, For: hangFor}
			}
			if cmd.Flags().Changed("timeout") {
				s.Timeout = &fault.Toggle{On: true, For: timeout}
			}
			if bandwidth != "" {
				n, err := fault.ParseBytes(bandwidth)
				if err != nil {
					return fmt.Errorf("--%w", err)
				}
				b := fault.Bytes(n)
				s.Bandwidth = &b
			}
			if limitData != "" {
				n, err := fault.ParseBytes(limitData)
				if err != nil {
					return fmt.Errorf("--limit-data: %w", err)
				}
				b := fault.Bytes(n)
				s.LimitData = &b
			}
			if _, err := s.Rule(time.Now()); err != nil { // say what is wrong before dialling
				return err
			}
			c, err := g.faultClient(cmd.Context())
			if err != nil {
				return err
			}
			r, err := c.AddFault(cmd.Context(), s)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\t%s: %s%s\n", r.ID, r.Service, r.String(), expiresIn(r.Expires))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&s.ID, "id", "", "the rule's id (default f1, f2, ...)")
	f.StringVar(&s.Latency, "latency", "", "delay each matching request by this much (200ms)")
	f.StringVar(&s.Jitter, "jitter", "", "spread the latency by this much (uniform unless --distribution normal)")
	f.StringVar(&s.Distribution, "distribution", "", "jitter distribution: fixed, uniform or normal")
	f.IntVar(&s.Abort, "abort", 0, "answer with this HTTP status instead of the service")
	f.StringVar(&s.Body, "body", "", "the abort's response body (or the gRPC abort's message)")
	f.IntVar(&s.GRPCAbort, "grpc-abort", 0, "answer gRPC calls with this grpc-status (14 is UNAVAILABLE)")
	f.BoolVar(&s.Reset, "reset", false, "reset the client's connection")
	f.StringVar(&s.ResetAfter, "reset-after", "", "hold the request this long, then reset the connection (a peer dying mid-call)")
	f.BoolVar(&hang, "hang", false, "send nothing until the client gives up")
	f.DurationVar(&hangFor, "hang-for", 0, "send nothing for this long, then close the connection")
	f.StringVar(&bandwidth, "bandwidth", "", "limit the response to bytes per second (10KB, 1MB, 512)")
	f.StringVar(&s.SlowBody, "slow-body", "", "send the response body a chunk at a time, this far apart")
	f.IntVar(&s.Chunk, "chunk", 0, "slow body chunk size in bytes (default 1)")
	f.DurationVar(&timeout, "timeout", 0, "TCP: relay nothing, and close the connection after this long (0: never)")
	f.BoolVar(&s.PortDown, "port-down", false, "refuse connections, as a port nobody listens on")
	f.StringVar(&s.SlowClose, "slow-close", "", "hold the connection's close this long")
	f.StringVar(&limitData, "limit-data", "", "close the connection after this many response bytes (10KB)")
	f.StringVar(&s.Caller, "caller", "", "only hops from this service (client: from outside the stack)")
	f.StringVar(&s.Route, "route", "", "only requests whose path matches this glob ('/charge*')")
	f.StringVar(&s.Method, "method", "", "only requests with this method")
	f.StringVar(&s.Header, "header", "", "only requests with this header: Name, Name=value or Name~regex")
	f.StringVar(&s.Direction, "direction", "", "request (default: before the service sees it) or response (after it answered)")
	f.Float64Var(&s.Probability, "probability", 0, "the chance each matching request gets the fault (0.2); default always")
	f.IntVar(&s.First, "first", 0, "only the first N matching requests")
	f.StringVar(&s.For, "for", "", "remove the fault after this long (5m)")
	return cmd
}

func expiresIn(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf(" (expires in %s)", time.Until(t).Round(time.Second))
}

func newFaultLsCmd(g *globalOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the faults in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: use table or json", format)
			}
			c, err := g.faultClient(cmd.Context())
			if err != nil {
				return err
			}
			l, err := c.Faults(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(l)
			}
			if len(l.Rules) == 0 {
				fmt.Fprintln(g.stdout, "no faults")
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSERVICE\tFAULT\tEXPIRES")
				for _, r := range l.Rules {
					exp := "-"
					if !r.Expires.IsZero() {
						exp = "in " + time.Until(r.Expires).Round(time.Second).String()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.Service, r.String(), exp)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if l.HeaderTrigger {
				fmt.Fprintf(g.stdout, "%s request headers are obeyed (header_trigger)\n", fault.TriggerHeader)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func newFaultRmCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID...",
		Short: "Remove faults by id (as fault ls shows them)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.faultClient(cmd.Context())
			if err != nil {
				return err
			}
			for _, id := range args {
				r, err := c.RemoveFault(cmd.Context(), id)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "removed %s\t%s: %s\n", r.ID, r.Service, r.String())
			}
			return nil
		},
	}
}

func newFaultClearCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "clear",
		Short: "Remove every fault",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.faultClient(cmd.Context())
			if err != nil {
				return err
			}
			n, err := c.ClearFaults(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed %d fault(s)\n", n)
			return nil
		},
	}
}

func newFaultApplyCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "apply FILE",
		Short: "Replace every fault with a scenario file's (header_trigger, rules)",
		Long: `Replace every fault with those of a scenario file, the same shape as
x-devstack.faults in the project file:

  header_trigger: true        # obey X-Devstack-Fault: latency=200ms request headers
  rules:
    - {service: payments, latency: 2s}
    - {service: payments, abort: 503, probability: 0.1}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			sc, err := fault.ParseScenario(args[0], data)
			if err != nil {
				return err
			}
			c, err := g.faultClient(cmd.Context())
			if err != nil {
				return err
			}
			l, err := c.ApplyFaults(cmd.Context(), sc)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			for _, r := range l.Rules {
				fmt.Fprintf(g.stdout, "%s\t%s: %s%s\n", r.ID, r.Service, r.String(), expiresIn(r.Expires))
			}
			fmt.Fprintf(g.stdout, "%d fault(s) in force\n", len(l.Rules))
			return nil
		},
	}
}

func newPluginsCmd(g *globalOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List the running stack's plugins, with state, version and restarts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: use table or json", format)
			}
			p, err := g.load(cmd.Context(), nil)
			if err != nil {
				return err
			}
			c, _, err := g.client(cmd.Context(), p)
			if errors.Is(err, control.ErrNotRunning) {
				return fmt.Errorf("%s is not running; plugins run with the stack", p.Name)
			} else if err != nil {
				return err
			}
			st, err := c.Plugins(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSTATE\tRESTARTS\tRULES\tPID\tFROM\tLAST ERROR")
			for _, s := range st {
				from := "built-in"
				if !s.Builtin {
					from = s.Path
				}
				pid := "-"
				if s.Pid != 0 {
					pid = fmt.Sprint(s.Pid)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", s.Name, dash(s.Version), s.State, s.Restarts, s.Rules, pid, from, dash(strings.ReplaceAll(s.LastError, "\n", " ")))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

// newPluginCmd runs a built-in plugin: devstack starts itself this way.
func newPluginCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "plugin NAME",
		Short:  "Serve a built-in plugin (devstack runs this itself)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			switch args[0] {
			case faultinject.Name:
				faultinject.Serve()
				return nil
			case reload.Name:
				reload.Serve()
				return nil
			}
			return fmt.Errorf("no built-in plugin %q (there are %s and %s)", args[0], faultinject.Name, reload.Name)
		},
	}
}

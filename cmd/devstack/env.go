package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/runner"
)

type envOptions struct{ format string }

func newEnvCmd(g *globalOptions) *cobra.Command {
	o := &envOptions{}
	cmd := &cobra.Command{
		Use:   "env SERVICE",
		Short: "Print how to run a service yourself (IDE, debugger) in devstack's place",
		Long: `env prints the command line, directory and environment that run SERVICE
outside devstack, in its place: listening on the private port the proxy
forwards its declared port to, with the other services' addresses as the
host reaches them. The stack must be running, with SERVICE left to you
(up --except SERVICE, x-devstack.external: true, or devstack stop SERVICE).

  --format shell   a command to paste into a shell (default)
  --format dotenv  the environment as KEY=VALUE lines, for an IDE's .env file
  --format json    directory, argv and environment`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.serviceNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.format != "shell" && o.format != "dotenv" && o.format != "json" {
				return fmt.Errorf("--format %q: use shell, dotenv or json", o.format)
			}
			p, err := g.load(cmd.Context(), args)
			if err != nil {
				return err
			}
			c, _, err := g.client(cmd.Context(), p)
			if errors.Is(err, control.ErrNotRunning) {
				return fmt.Errorf("%s is not running, and the ports to use are the running stack's; start it without %s first: `devstack up -d --except %s`", p.Name, args[0], args[0])
			}
			if err != nil {
				return err
			}
			hr, err := c.Env(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			switch o.format {
			case "json":
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(hr)
			case "dotenv":
				for _, kv := range hr.Env {
					fmt.Fprintln(g.stdout, kv)
				}
				return nil
			}
			writeShellRun(g.stdout, hr)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.format, "format", "shell", "output format: shell, dotenv or json")
	return cmd
}

// writeShellRun writes hr as a command for a POSIX shell. It runs in a
// subshell, so that pasting it leaves the shell's directory and
// environment as they were; the service's environment adds to the shell's.
func writeShellRun(w io.Writer, hr runner.HostRun) {
	fmt.Fprintf(w, "# %s, run yourself in devstack's place", hr.Service)
	for i, l := range hr.Listen {
		fmt.Fprintf(w, "; it must listen on %s (the proxy forwards port %d there)", l, hr.Declared[i])
	}
	fmt.Fprintln(w, ".")
	argv := hr.Argv
	if hr.Shell {
		argv = []string{"/bin/sh", "-c", hr.Argv[0]}
	}
	if len(argv) == 0 {
		fmt.Fprintf(w, "# %s has no x-devstack.run: start it your way with this environment", hr.Service)
		if len(hr.Command) > 0 {
			fmt.Fprintf(w, " (its container runs %s)", strings.Join(hr.Command, " "))
		}
		fmt.Fprintln(w, ".")
		fmt.Fprintf(w, "cd %s\n", shellQuote(hr.Dir))
		for _, kv := range hr.Env {
			k, v, _ := strings.Cut(kv, "=")
			fmt.Fprintf(w, "export %s=%s\n", k, shellQuote(v))
		}
		return
	}
	fmt.Fprintf(w, "( cd %s && exec env \\\n", shellQuote(hr.Dir))
	for _, kv := range hr.Env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(w, "  %s=%s \\\n", k, shellQuote(v))
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	fmt.Fprintf(w, "  %s )\n", strings.Join(q, " "))
}

// shellQuote quotes s for a POSIX shell, as one word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

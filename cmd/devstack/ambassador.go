package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/runner/docker"
)

// ambassadorOptions are the flags of the hidden ambassador command.
type ambassadorOptions struct {
	relays []string // PORT=HOST:PORT, with a PROXY protocol v1 line
	direct []string // PORT=HOST:PORT, bytes as they are
	stdout io.Writer
	stderr io.Writer
}

// newAmbassadorCmd is the program of the ambassador containers the Docker
// backend puts in front of container services (runner/docker's
// ambassador.go). It is not meant to be run by hand, so it is hidden.
func newAmbassadorCmd(g *globalOptions) *cobra.Command {
	o := &ambassadorOptions{stdout: g.stdout, stderr: g.stderr}
	cmd := &cobra.Command{
		Use:    "ambassador --relay PORT=HOST:PORT [--relay ...] [--direct PORT=HOST:PORT ...]",
		Short:  "Relay a container service's ports to the devstack proxy (runs inside Docker)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAmbassador(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.relays, "relay", nil, "listen on PORT and relay to HOST:PORT, naming the caller in a PROXY protocol v1 line (repeatable)")
	f.StringArrayVar(&o.direct, "direct", nil, "listen on PORT and relay to HOST:PORT as is (repeatable)")
	return cmd
}

// runAmbassador relays until ctx ends: main's context ends on SIGTERM,
// which is how the engine stops the container.
func runAmbassador(ctx context.Context, o *ambassadorOptions) error {
	var relays []docker.Relay
	for _, flag := range []struct {
		vals  []string
		proxy bool
	}{{o.relays, true}, {o.direct, false}} {
		for _, v := range flag.vals {
			r, err := docker.ParseRelay(v, flag.proxy)
			if err != nil {
				return err
			}
			relays = append(relays, r)
		}
	}
	desc := make([]string, len(relays))
	for i, r := range relays {
		desc[i] = ":" + r.String()
		if r.Proxy {
			desc[i] += " (PROXY v1)"
		}
	}
	return docker.RunAmbassador(ctx, docker.AmbassadorOptions{
		Relays: relays,
		Logger: slog.New(slog.NewTextHandler(o.stderr, nil)),
		Ready: func([]net.Addr) {
			fmt.Fprintf(o.stdout, "%s: %s\n", docker.ReadyLine, strings.Join(desc, ", "))
		},
	})
}

package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/runner/docker/holder"
)

// holderOptions are the flags of the hidden holder command.
type holderOptions struct {
	socket string
}

// newHolderCmd is the PID 1 of a container service's standby container
// (runner/docker/holder): it waits on a unix socket, places a reload's
// files and starts the service's command. It is not meant to be run by
// hand, so it is hidden. It prints nothing of its own, since its stdout
// and stderr are the service's container log; only an error that keeps
// it from listening.
func newHolderCmd() *cobra.Command {
	o := &holderOptions{}
	cmd := &cobra.Command{
		Use:    "holder --socket PATH -- CMD [ARG...]",
		Short:  "Hold a standby container until a reload starts its service (runs inside Docker)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHolder(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after CMD are the command's
	f.StringVar(&o.socket, "socket", "", "unix socket to listen on (a file already there is replaced)")
	return cmd
}

// runHolder serves until the holder ends and passes its code on: the
// service's exit code once it started. main's context ends on SIGTERM and
// SIGINT, which before the start end the holder with 0; after it, Serve
// ignores the context and forwards the signals.
func runHolder(ctx context.Context, o *holderOptions, argv []string) error {
	if o.socket == "" {
		return errors.New("holder: --socket is required")
	}
	code, err := holder.Serve(ctx, holder.Options{Socket: o.socket, Argv: argv})
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

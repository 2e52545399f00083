package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/supervisor"
)

// shutdownTimeout bounds a background supervisor's shutdown on SIGTERM: it
// then kills what is left.
const shutdownTimeout = 2 * time.Minute

func newSuperviseCmd(g *globalOptions) *cobra.Command {
	var readyFD int
	var backend string
	var clientUp bool
	var except []string
	cmd := &cobra.Command{
		Use:    "supervise [SERVICE...]",
		Short:  "Run the background supervisor (started by up -d)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, names []string) error {
			var ready *os.File
			if readyFD > 0 {
				ready = os.NewFile(uintptr(readyFD), "ready")
			}
			say := func(msg string) {
				if ready != nil {
					fmt.Fprintln(ready, msg)
					ready.Close()
					ready = nil
				}
			}
			err := runSupervise(g, backend, clientUp, except, names, say)
			if err != nil {
				say(strings.ReplaceAll(err.Error(), "\n", "; "))
			}
			return err
		},
	}
	cmd.Flags().IntVar(&readyFD, "ready-fd", 0, "file descriptor to write \"ok\" to once serving")
	cmd.Flags().StringVar(&backend, "backend", "", "default backend (as up --backend)")
	cmd.Flags().BoolVar(&clientUp, "client-up", false, "start nothing until a client asks for up over the API")
	cmd.Flags().StringSliceVar(&except, "except", nil, "services the user runs (as up --except)")
	return cmd
}

func runSupervise(g *globalOptions, backend string, clientUp bool, except, names []string, ready func(string)) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	signal.Ignore(syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := g.load(ctx, nil)
	if err != nil {
		return err
	}
	// The supervisor's own log, bounded and rotated (its standard error
	// is the same file, for a crash's trace).
	if err := supervisor.EnsurePrivate(supervisor.StateDir(p.Name)); err != nil {
		return err
	}
	logw, err := supervisor.OpenRotatingLog(supervisor.Paths{Dir: supervisor.StateDir(p.Name)}.SupLog(), 0)
	if err != nil {
		return err
	}
	defer logw.Close()
	_ = logw.CaptureStderr()
	logger := slog.New(slog.NewTextHandler(logw, nil))
	sup, be, err := startStack(ctx, p, backend, supervisor.Options{
		External: except,
		Services: firstServices(names, except),
		Logger:   logger,
		Events: func(ev runner.Event) {
			logger.Info(ev.Msg, "service", ev.Service)
		},
	}, nil)
	if err != nil {
		return err
	}
	defer be.Close()
	if clientUp {
		// up -d asks for the start itself, over the API, once it follows
		// the events: none is lost before it listens. Port problems are
		// told now, through the ready pipe.
		if err := sup.Runner().CheckPorts(names); err != nil {
			_ = sup.Shutdown(context.Background())
			return err
		}
		ready("ok")
	} else {
		ready("ok")
		go func() {
			if err := sup.Up(ctx, names); err != nil {
				logger.Error("stack failed to come up", "err", err)
			}
		}()
	}
	select {
	case <-sigs:
		logger.Info("signal received; stopping the stack")
	case <-sup.DownRequested():
	}
	cancel()
	killCtx, kill := context.WithTimeout(context.Background(), shutdownTimeout)
	defer kill()
	go func() {
		<-sigs
		kill()
	}()
	return sup.Shutdown(killCtx)
}

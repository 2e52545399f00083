package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
)

// The engine floor: the least work any tool must ask of the engine for
// up (floorUp, below) and for down: down's end state is no container and
// no network of the project left.

// object is one container or network of a project; service is a
// container's compose service.
type object struct{ id, name, service string }

// floorTargets lists the project's containers and networks (by label), for
// the floor's down. The bench calls it before the clock starts: a tool
// could know these from its up (devstack keeps them in its state), so
// finding them is not work down must do.
func (e *engine) floorTargets(ctx context.Context, label string) (cs, ns []object, err error) {
	f := make(client.Filters).Add("label", label)
	cl, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, nil, fmt.Errorf("listing containers with label %s: %w", label, err)
	}
	for _, c := range cl.Items {
		cs = append(cs, object{c.ID, strings.TrimPrefix(c.Names[0], "/"), c.Labels["com.docker.compose.service"]})
	}
	nl, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, nil, fmt.Errorf("listing networks with label %s: %w", label, err)
	}
	for _, n := range nl.Items {
		ns = append(ns, object{id: n.ID, name: n.Name})
	}
	return cs, ns, nil
}

// floorDown force-removes every container at once (the engine kills each
// with SIGKILL, no grace period, and removes it), and once the last is
// gone, every network at once: a network with endpoints left cannot be
// removed, so that order is the only one. That is what compose's down
// removes (containers and the project's networks; volumes only with -v,
// and the bench's image declares none), with nothing a tool adds on top:
// no process start, no file to load, no stop timeout, no ordering by
// dependency. Each removal that returns is a line on out (when not nil),
// which -timeline stamps.
func (e *engine) floorDown(ctx context.Context, out io.Writer, cs, ns []object) error {
	var mu sync.Mutex // out is a timeline's line stamper, which is not safe for concurrent writes
	var errs []error
	all := func(objs []object, kind string, remove func(id string) error) {
		var wg sync.WaitGroup
		for _, o := range objs {
			wg.Go(func() {
				err := remove(o.id)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("removing %s %s: %w", kind, o.name, err))
				} else if out != nil {
					fmt.Fprintf(out, "removed %s %s\n", kind, o.name)
				}
			})
		}
		wg.Wait()
	}
	all(cs, "container", func(id string) error {
		_, err := e.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
		return err
	})
	if len(errs) > 0 {
		return errors.Join(errs...) // the networks would only fail too
	}
	all(ns, "network", func(id string) error {
		_, err := e.cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
		return err
	})
	return errors.Join(errs...)
}

// The floor of up: the same containers, created (with their network) by
// `docker-compose up --no-start` before the clock starts, then each
// started as soon as the services it depends on are healthy (all those
// without dependencies at once), and probed until healthy itself. That is
// less than any tool's up that honours depends_on: creating is left out,
// and nothing waits beyond the dependencies. Health is seen as soon as
// either the engine says so or the bench's own run of the healthcheck
// (through exec, every pace, as devstack runs it where the engine ignores
// start_interval) passes.

// floorUp starts every container in cs once its service's dependencies
// (deps, by compose service name) are healthy, and returns once each is
// healthy. Each container that turns healthy is a line on out (when not
// nil).
func (e *engine) floorUp(ctx context.Context, out io.Writer, label string, cs []object, deps map[string][]string, pace time.Duration) error {
	// One failure ends the wait of the others, which may depend on it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Engine verdicts, subscribed before the first start.
	w := e.watchHealth(ctx, label)
	defer w.stop()
	var mu sync.Mutex
	engineSaid := map[string]bool{}
	go func() {
		for m := range w.ev.Messages {
			if strings.TrimSpace(strings.TrimPrefix(string(m.Action), "health_status:")) == "healthy" {
				mu.Lock()
				engineSaid[m.Actor.ID] = true
				mu.Unlock()
			}
		}
	}()
	// healthy[service] closes when the service's container is healthy.
	healthy := map[string]chan struct{}{}
	for _, c := range cs {
		healthy[c.service] = make(chan struct{})
	}
	var errs []error
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			err := func() error {
				for _, d := range deps[c.service] {
					ch, ok := healthy[d]
					if !ok {
						return fmt.Errorf("it depends on %s, which has no container", d)
					}
					select {
					case <-ch:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return e.startHealthy(ctx, c, pace, func() bool {
					mu.Lock()
					defer mu.Unlock()
					return engineSaid[c.id]
				})
			}()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("container %s: %w", c.name, err))
				cancel()
				return
			}
			close(healthy[c.service])
			if out != nil {
				fmt.Fprintf(out, "healthy %s\n", c.name)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startHealthy starts c and waits until its healthcheck passes, by its
// own probe every pace or by the engine's word (said).
func (e *engine) startHealthy(ctx context.Context, c object, pace time.Duration, said func() bool) error {
	insp, err := e.cli.ContainerInspect(ctx, c.id, client.ContainerInspectOptions{})
	if err != nil {
		return err
	}
	var cmd []string
	if hc := insp.Container.Config.Healthcheck; hc != nil && len(hc.Test) > 1 {
		switch hc.Test[0] {
		case "CMD":
			cmd = hc.Test[1:]
		case "CMD-SHELL":
			cmd = []string{"/bin/sh", "-c", hc.Test[1]}
		}
	}
	if cmd == nil {
		return errors.New("it has no healthcheck to wait for")
	}
	if _, err := e.cli.ContainerStart(ctx, c.id, client.ContainerStartOptions{}); err != nil {
		return err
	}
	t := time.NewTimer(pace)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if said() || e.probe(ctx, c.id, cmd) {
			return nil
		}
		t.Reset(pace)
	}
}

// probe runs cmd in container id and reports whether it exited 0.
func (e *engine) probe(ctx context.Context, id string, cmd []string) bool {
	created, err := e.cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return false
	}
	att, err := e.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, att.Reader) // until the command ends
	att.Close()
	res, err := e.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
	return err == nil && res.ExitCode == 0
}

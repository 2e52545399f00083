package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/moby/moby/client"
)

// The engine floor: the least work any tool's down must ask of the engine
// to reach down's end state (no container and no network of the project
// left). Its down is timed like the others'; its up is docker-compose's,
// only the way to a stack to take down, and not reported.

// object is one container or network of a project.
type object struct{ id, name string }

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
		cs = append(cs, object{c.ID, strings.TrimPrefix(c.Names[0], "/")})
	}
	nl, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, nil, fmt.Errorf("listing networks with label %s: %w", label, err)
	}
	for _, n := range nl.Items {
		ns = append(ns, object{n.ID, n.Name})
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

package docker

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
)

// Prepare implements runner.Preparer. While a service waits on its
// dependencies, its missing containers are created and its ambassador is
// started (in the background: a dependency that turns healthy meanwhile
// lets the service's own start begin beside it), so that its start, when
// its turn comes, is one start call per replica. On this kind of engine
// a container start takes most of a second and starts run partly one at
// a time, so an ambassador started only alongside the service would make
// every layer of the stack slower.
//
// Only what Start would do anyway is done, and only when the image is
// already there: a service that builds or pulls is prepared by Start.
// Start then takes a created container with the same config hash as its
// own, and finds the ambassador running with the plan it would make.
func (b *Backend) Prepare(ctx context.Context, spec runner.Spec) (func(), error) {
	p, svc := spec.Project, spec.Service
	img, err := b.cli.ImageInspect(ctx, imageName(p, svc))
	if err != nil {
		return nil, nil // not there yet, or the engine is in trouble: Start says so
	}
	pl, err := planFor(spec, img.ID)
	if err != nil {
		return nil, nil // Start reports the same error
	}
	existing, err := b.groundwork(ctx, spec)
	if err != nil {
		return nil, err
	}
	var made []string
	ambName := ""
	undo := func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_ = b.preparedStart(ctx, ambName) // not removed under a start
		for _, id := range made {
			_ = b.removeContainer(ctx, id)
		}
	}
	for num := 1; num <= replicas(svc); num++ {
		if _, ok := existing[num]; ok {
			continue // Start adopts or replaces it
		}
		id, err := b.create(ctx, pl, containerName(p, svc, num), num)
		if err != nil {
			undo()
			return nil, fmt.Errorf("creating container %s: %w", containerName(p, svc, num), err)
		}
		made = append(made, id)
	}
	if _, member := b.joinShared(ctx, spec); wantsAmbassador(spec) && !member {
		ap, err := b.planAmbassador(ctx, spec, img.ID)
		if err != nil {
			return undo, nil // Start runs the service without one and says why
		}
		id, err := b.startPreparedAmbassador(ctx, ap)
		if id != "" {
			made, ambName = append(made, id), ap.name
		}
		if err != nil {
			return undo, err
		}
	}
	return undo, nil
}

// startPreparedAmbassador creates ap's container unless one exists, and
// returns its id when it made it; the start goes on in the background.
// Start's startAmbassador waits for that start (beside the service's own:
// the engine runs the two at once), then takes the ambassador over
// (prepared) rather than adopting it as a leftover of an earlier run. A
// start that failed leaves a container that is not running, which Start
// replaces.
func (b *Backend) startPreparedAmbassador(ctx context.Context, ap *ambassadorPlan) (string, error) {
	if _, err := b.cli.ContainerInspect(ctx, ap.name, client.ContainerInspectOptions{}); err == nil {
		return "", nil // running or not, Start decides what to do with it
	}
	id, err := b.create(ctx, ap.pl, ap.name, 0)
	if err != nil {
		return "", fmt.Errorf("creating container %s: %w", ap.name, err)
	}
	done := make(chan struct{})
	b.mu.Lock()
	b.prepared[id] = true
	b.starting[ap.name] = done
	b.mu.Unlock()
	b.ambAddrs.starting()
	go func() {
		defer close(done)
		defer b.ambAddrs.started()
		_, _ = b.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
		b.mu.Lock()
		if b.starting[ap.name] == done {
			delete(b.starting, ap.name)
		}
		b.mu.Unlock()
	}()
	return id, nil
}

// preparedStart waits until Prepare's start of the ambassador named name,
// if one is under way, has ended.
func (b *Backend) preparedStart(ctx context.Context, name string) error {
	b.mu.Lock()
	done := b.starting[name]
	b.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takePrepared reports whether Prepare started container id in this run,
// and forgets it.
func (b *Backend) takePrepared(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := b.prepared[id]
	delete(b.prepared, id)
	return ok
}

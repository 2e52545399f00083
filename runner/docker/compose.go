package docker

import (
	"context"
	"fmt"
	"slices"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// TakeOver removes the containers that docker compose (not devstack)
// made for the named services of project proj, so that devstack can run
// them: they hold the services' names and published ports. It is what
// Compose does to a container whose configuration changed, and a
// container devstack makes is always configured differently from
// Compose's (see DESIGN.md, "Containers Compose made"), so none is
// adopted as it runs. The project's volumes are kept, anonymous ones
// included; one-off containers (`docker compose run`) are left alone.
// say is told of each container removed.
func (b *Backend) TakeOver(ctx context.Context, proj string, services []string, say func(service, msg string)) error {
	cs, err := b.composeMade(ctx, proj, services)
	if err != nil {
		return err
	}
	for _, c := range cs {
		svc, name := c.Labels[composeService], firstName(c.Names)
		if _, err := b.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			return fmt.Errorf("removing container %s, which docker compose made for service %q: %w; remove it with `docker rm -f %s`", name, svc, err, name)
		}
		was := "stopped"
		if c.State == container.StateRunning {
			was = "running"
		}
		say(svc, fmt.Sprintf("removed container %s (%s), which docker compose made: devstack runs the service its own way (the proxy in front of its ports), in a container it makes now; the project's volumes are kept", name, was))
	}
	return nil
}

// ComposeMade names the containers docker compose made for the named
// services of project proj: those TakeOver removes.
func (b *Backend) ComposeMade(ctx context.Context, proj string, services []string) ([]string, error) {
	cs, err := b.composeMade(ctx, proj, services)
	var out []string
	for _, c := range cs {
		out = append(out, firstName(c.Names))
	}
	return out, err
}

func (b *Backend) composeMade(ctx context.Context, proj string, services []string) ([]container.Summary, error) {
	res, err := b.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", composeProject+"="+proj),
	})
	if err != nil {
		return nil, fmt.Errorf("listing the containers docker compose made for project %q: %w", proj, err)
	}
	var out []container.Summary
	for _, c := range res.Items {
		// Not by dev.devstack.project: a container inherits its image's
		// labels, and an image devstack built for the project has it.
		ours := c.Labels[LabelService] != "" || c.Labels[LabelRole] != ""
		if !ours && c.Labels[composeOneoff] != "True" && slices.Contains(services, c.Labels[composeService]) {
			out = append(out, c)
		}
	}
	return out, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// engine is the bench's own view of the Docker Engine: health, leftovers
// and cleanup. It never takes part in what is timed, except for reading
// health events while Compose's up is timed, and for the engine floor's
// down (floor.go), which is its own.
type engine struct {
	cli     *client.Client
	api     string // negotiated API version
	version string // engine version
}

func newEngine(ctx context.Context) (*engine, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("connecting to the docker engine: %w", err)
	}
	ping, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("the docker engine does not answer: %w; start it or set DOCKER_HOST", err)
	}
	v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("reading the engine version: %w", err)
	}
	return &engine{cli: cli, api: ping.APIVersion, version: v.Version}, nil
}

// apiAtLeast compares dotted API versions ("1.41" < "1.44").
func apiAtLeast(have, want string) bool {
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i := range max(len(h), len(w)) {
		var a, b int
		if i < len(h) {
			a, _ = strconv.Atoi(h[i])
		}
		if i < len(w) {
			b, _ = strconv.Atoi(w[i])
		}
		if a != b {
			return a > b
		}
	}
	return true
}

// healthWatch collects the containers of one project that the engine has
// reported healthy since the watch began.
type healthWatch struct {
	e       *engine
	label   string
	ev      client.EventsResult
	cancel  context.CancelFunc
	healthy map[string]bool
}

// watchHealth subscribes to health_status events of containers labelled
// label (key=value). Events() returns once the subscription is in place.
func (e *engine) watchHealth(ctx context.Context, label string) *healthWatch {
	ctx, cancel := context.WithCancel(ctx)
	f := make(client.Filters).Add("type", "container").Add("event", "health_status").Add("label", label)
	return &healthWatch{e: e, label: label, cancel: cancel, healthy: map[string]bool{},
		ev: e.cli.Events(ctx, client.EventsListOptions{Filters: f})}
}

func (w *healthWatch) stop() { w.cancel() }

// wait returns once n containers of the project are healthy. A container
// that turns unhealthy or exits fails the wait.
func (w *healthWatch) wait(ctx context.Context, n int) error {
	// Verdicts that came before up returned are in the channel already;
	// the list below only guards against a stream that broke.
	for len(w.healthy) < n {
		select {
		case m, ok := <-w.ev.Messages:
			if !ok {
				return w.fallback(ctx, n)
			}
			switch status := strings.TrimSpace(strings.TrimPrefix(string(m.Action), "health_status:")); status {
			case "healthy":
				w.healthy[m.Actor.ID] = true
			case "unhealthy":
				return fmt.Errorf("container %s turned unhealthy", m.Actor.Attributes["name"])
			}
		case err := <-w.ev.Err:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading engine events: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (w *healthWatch) fallback(ctx context.Context, n int) error {
	healthy, _, err := w.e.health(ctx, w.label)
	if err != nil {
		return err
	}
	if healthy < n {
		return fmt.Errorf("the event stream ended with %d of %d containers healthy", healthy, n)
	}
	return nil
}

// roleLabel marks devstack's helper containers (ambassadors), which are
// not services.
const roleLabel = "dev.devstack.role"

// health counts the project's service containers, and those healthy, from
// the status the engine shows (`Up 3 seconds (healthy)`).
func (e *engine) health(ctx context.Context, label string) (healthy, total int, err error) {
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return 0, 0, fmt.Errorf("listing containers with label %s: %w", label, err)
	}
	for _, c := range res.Items {
		if _, helper := c.Labels[roleLabel]; helper {
			continue
		}
		total++
		if strings.Contains(c.Status, "(healthy)") {
			healthy++
		}
	}
	return healthy, total, nil
}

// leftovers names the containers and networks still labelled label.
func (e *engine) leftovers(ctx context.Context, label string) (string, error) {
	f := make(client.Filters).Add("label", label)
	cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return "", err
	}
	ns, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return "", err
	}
	var left []string
	for _, c := range cs.Items {
		left = append(left, "container "+strings.TrimPrefix(c.Names[0], "/"))
	}
	for _, n := range ns.Items {
		left = append(left, "network "+n.Name)
	}
	return strings.Join(left, ", "), nil
}

// remove force-removes the containers and networks labelled label.
func (e *engine) remove(ctx context.Context, label string) error {
	f := make(client.Filters).Add("label", label)
	cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs.Items {
		if _, err := e.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	ns, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, n := range ns.Items {
		if _, err := e.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeImage removes the bench's image and its untagged parents.
func (e *engine) removeImage(ctx context.Context, ref string) error {
	_, err := e.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("removing image %s: %w", ref, err)
	}
	return nil
}

// count counts every container labelled label.
func (e *engine) count(ctx context.Context, label string) (int, error) {
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return 0, fmt.Errorf("listing containers with label %s: %w", label, err)
	}
	return len(res.Items), nil
}

// imagesLabelled lists the IDs of the images carrying label (key=value).
func (e *engine) imagesLabelled(ctx context.Context, label string) (map[string]bool, error) {
	res, err := e.cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return nil, fmt.Errorf("listing images with label %s: %w", label, err)
	}
	ids := map[string]bool{}
	for _, img := range res.Items {
		ids[img.ID] = true
	}
	return ids, nil
}

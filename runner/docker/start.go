package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
)

// Start implements runner.Backend. It creates and starts the service's
// containers, -1 to -N for N replicas, and returns one Instance for all of
// them. A container already running with the same config hash (left by an
// earlier `up`) is adopted rather than recreated; one that is stopped or
// configured differently is replaced, as `docker compose up` does.
func (b *Backend) Start(ctx context.Context, spec runner.Spec) (runner.Instance, error) {
	p, svc := spec.Project, spec.Service
	n := replicas(svc)
	if svc.Compose.ContainerName != "" && n > 1 {
		return nil, fmt.Errorf("service %q sets container_name %q and %d replicas, but container names are unique; remove container_name or run one replica",
			svc.Name, svc.Compose.ContainerName, n)
	}
	imageID, err := b.ensureImage(ctx, spec)
	if err != nil {
		return nil, err
	}
	var ap *ambassadorPlan
	var sa *sharedAmbassadors
	if wantsAmbassador(spec) {
		if shared, member := b.joinShared(ctx, spec); member {
			sa = shared // the project's ambassador answers to its names (shared.go)
		} else if ap, err = b.planAmbassador(ctx, spec, imageID); err != nil {
			fmt.Fprintf(spec.Status, "running service %q without an ambassador: %v; calls to it by service name go straight to its container and are not traced\n", svc.Name, err)
			spec.Ambassador = nil
		}
	}
	if ap == nil {
		if err := b.removeAmbassador(ctx, p, svc); err != nil {
			return nil, err
		}
	}
	pl, err := planFor(spec, imageID)
	if err != nil {
		return nil, err
	}
	existing, err := b.groundwork(ctx, spec)
	if err != nil {
		return nil, err
	}

	inst := newInstance(b, spec, pl, n)
	inst.shared = sa != nil
	for num := 1; num <= n; num++ {
		name := containerName(p, svc, num)
		c, found := existing[num]
		delete(existing, num)
		if found && c.State == container.StateRunning && c.Labels[LabelConfigHash] == pl.hash {
			fmt.Fprintf(spec.Status, "container %s is up to date; reattaching\n", name)
			inst.reps = append(inst.reps, &replica{id: c.ID, name: name, num: num, adopted: true})
			continue
		}
		if found && c.State == container.StateCreated && c.Labels[LabelConfigHash] == pl.hash {
			// Made ahead by Prepare (or by a run stopped before it started
			// it): the same container Start would make.
			inst.reps = append(inst.reps, &replica{id: c.ID, name: name, num: num})
			continue
		}
		if found {
			why := "its configuration changed"
			if c.State != container.StateRunning {
				why = "it is " + string(c.State)
			}
			fmt.Fprintf(spec.Status, "recreating container %s: %s\n", name, why)
			if err := b.removeContainer(ctx, c.ID); err != nil {
				inst.abort()
				return nil, err
			}
		}
		if err := b.addReplica(ctx, inst, pl, name, num); err != nil {
			inst.abort()
			return nil, err
		}
	}
	// What is left is a replica beyond the current scale.
	for _, c := range existing {
		fmt.Fprintf(spec.Status, "removing container %s: beyond scale %d\n", firstName(c.Names), n)
		if err := b.removeContainer(ctx, c.ID); err != nil {
			inst.abort()
			return nil, err
		}
	}
	// The ambassador relays to the proxy, not to the container, so it
	// starts alongside the replicas rather than after them.
	ambErr := make(chan error, 1)
	switch {
	case ap != nil:
		go func() { ambErr <- inst.startAmbassador(ctx, ap) }()
	case sa != nil:
		go func() { ambErr <- sa.await(ctx) }()
	default:
		ambErr <- nil
	}
	err = inst.start(ctx)
	if aerr := <-ambErr; err == nil {
		err = aerr
	}
	if err != nil {
		inst.abort()
		return nil, fmt.Errorf("starting service %q: %w", svc.Name, err)
	}
	return inst, nil
}

// groundwork makes sure the service's networks and volumes exist and
// returns its containers by replica number (see serviceContainers).
func (b *Backend) groundwork(ctx context.Context, spec runner.Spec) (map[int]container.Summary, error) {
	p, svc := spec.Project, spec.Service
	if err := b.ensureNetworks(ctx, p, svc); err != nil {
		return nil, err
	}
	if err := b.ensureVolumes(ctx, p, svc); err != nil {
		return nil, err
	}
	return b.serviceContainers(ctx, p.Name, svc.Name)
}

// serviceContainers returns the service's containers by replica number.
// One without a number (not made by devstack's naming) is keyed below 0 so
// that Start removes it with the replicas beyond scale.
func (b *Backend) serviceContainers(ctx context.Context, proj, svc string) (map[int]container.Summary, error) {
	res, err := b.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelProject+"="+proj, LabelService+"="+svc),
	})
	if err != nil {
		return nil, fmt.Errorf("listing containers of service %q: %w", svc, err)
	}
	out := map[int]container.Summary{}
	for i, c := range res.Items {
		if c.Labels[LabelRole] == roleAmbassador {
			continue // not a replica: Start deals with it apart
		}
		if c.Labels[composeOneoff] == "True" {
			continue // a `run` container: not a replica either
		}
		num, err := strconv.Atoi(c.Labels[composeNumber])
		if err != nil || num < 1 {
			num = -1 - i
		}
		if prev, ok := out[num]; ok {
			// Two with one number: a reload's replacement and the container
			// it replaces, left by a devstack killed in between. The one
			// with the replica's name is the replica; the other goes.
			if firstName(c.Names) == proj+"-"+svc+"-"+strconv.Itoa(num) {
				c, prev = prev, c
			}
			out[-1-len(res.Items)-i] = c
			c = prev
		}
		out[num] = c
	}
	return out, nil
}

// create creates replica num from plan pl (num 0: a helper such as an
// ambassador, not a replica). Networks beyond the first are connected
// before the container starts: engines older than API 1.44 accept only one
// network at create time.
// addReplica creates replica num of inst's service under name, with what
// was synced into the service since its image was built.
func (b *Backend) addReplica(ctx context.Context, inst *Instance, pl *plan, name string, num int) error {
	id, err := b.create(ctx, pl, name, num)
	if err != nil {
		return fmt.Errorf("creating container %s for service %q: %w", name, inst.spec.Service.Name, err)
	}
	inst.reps = append(inst.reps, &replica{id: id, name: name, num: num})
	return b.copySynced(ctx, id, inst.spec.Synced)
}

func (b *Backend) create(ctx context.Context, pl *plan, name string, num int) (string, error) {
	cfg := *pl.config
	cfg.Labels = maps.Clone(cfg.Labels)
	if num > 0 {
		cfg.Labels[composeNumber] = strconv.Itoa(num)
	}
	var netCfg *network.NetworkingConfig
	if len(pl.nets) > 0 {
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			pl.nets[0].Name: {Aliases: pl.nets[0].Aliases, Links: pl.nets[0].Links},
		}}
	}
	res, err := b.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name, Config: &cfg, HostConfig: pl.host, NetworkingConfig: netCfg, Platform: pl.platform,
	})
	if cerrdefs.IsConflict(err) {
		return "", fmt.Errorf("%w; a container named %s that devstack did not create is in the way: remove it with `docker rm -f %s`", err, name, name)
	}
	if err != nil {
		return "", err
	}
	if err := b.copyFiles(ctx, res.ID, pl.files); err != nil {
		_ = b.removeContainer(context.WithoutCancel(ctx), res.ID)
		return "", err
	}
	for _, a := range pl.nets[min(1, len(pl.nets)):] {
		_, err := b.cli.NetworkConnect(ctx, a.Name, client.NetworkConnectOptions{
			Container: res.ID, EndpointConfig: &network.EndpointSettings{Aliases: a.Aliases, Links: a.Links},
		})
		if err != nil {
			_ = b.removeContainer(context.WithoutCancel(ctx), res.ID)
			return "", fmt.Errorf("connecting to network %s: %w", a.Name, err)
		}
	}
	return res.ID, nil
}

// removeContainer force-removes a container and its anonymous volumes; one
// that is already gone is fine.
func (b *Backend) removeContainer(ctx context.Context, id string) error {
	_, err := b.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !isRemovalInProgress(err) {
		return fmt.Errorf("removing container %s: %w", shortID(id), err)
	}
	return nil
}

// isRemovalInProgress is the engine's answer when two removals race (a
// Stop and a Down); the container goes either way.
func isRemovalInProgress(err error) bool {
	return cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress")
}

// Down implements runner.Cleaner: it removes every container and network
// labelled with the project, and its named volumes when removeVolumes is
// set, whether or not this devstack created them. Compose's project label
// counts too (every object devstack makes carries it): what docker
// compose made for the project goes as with `docker compose down`.
func (b *Backend) Down(ctx context.Context, proj string, removeVolumes bool) error {
	b.quitting.Wait()
	f := make(client.Filters).Add("label", composeProject+"="+proj)
	var errs []error
	cs, err := b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("listing containers of project %q: %w", proj, err)
	}
	// All at once: the engine takes longer over each removal than over
	// the call, and the networks go once their containers have.
	rm := make([]error, len(cs.Items))
	var wg sync.WaitGroup
	for k, c := range cs.Items {
		wg.Go(func() { rm[k] = b.removeContainer(ctx, c.ID) })
	}
	wg.Wait()
	errs = append(errs, rm...)
	ns, err := b.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("listing networks of project %q: %w", proj, err))
	}
	for _, n := range ns.Items {
		if _, err := b.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing network %s: %w", n.Name, err))
		}
	}
	// The containers that used the images rebuilds replaced are gone, and
	// with them the standbys and what their placed files link to.
	b.dropReplaced(ctx)
	b.mu.Lock()
	for k, sb := range b.standbys {
		if strings.HasPrefix(k, proj+"/") {
			delete(b.standbys, k)
			if sb.hc != nil {
				_ = sb.hc.Close()
			}
		}
	}
	b.mu.Unlock()
	if err := os.RemoveAll(b.standbyDir(proj)); err != nil {
		errs = append(errs, fmt.Errorf("removing the standbys' files: %w", err))
	}
	if removeVolumes {
		// By devstack's label and by Compose's: a volume that docker
		// compose created for the project is the project's too.
		var vols []string
		for _, vf := range []client.Filters{f, make(client.Filters).Add("label", LabelProject+"="+proj)} {
			vs, err := b.cli.VolumeList(ctx, client.VolumeListOptions{Filters: vf})
			if err != nil {
				errs = append(errs, fmt.Errorf("listing volumes of project %q: %w", proj, err))
			}
			for _, v := range vs.Items {
				if !slices.Contains(vols, v.Name) {
					vols = append(vols, v.Name)
				}
			}
		}
		for _, v := range vols {
			if _, err := b.cli.VolumeRemove(ctx, v, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("removing volume %s: %w", v, err))
			}
		}
	}
	// The objects are gone: a later Start must create them again.
	b.mu.Lock()
	clear(b.ensured)
	b.mu.Unlock()
	b.forgetShared(proj)
	return errors.Join(errs...)
}

// Containers counts the containers (running or not) labelled with the
// project, ambassadors and docker compose's included: what Down would
// remove.
func (b *Backend) Containers(ctx context.Context, proj string) (int, error) {
	cs, err := b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", composeProject+"="+proj)})
	if err != nil {
		return 0, fmt.Errorf("listing containers of project %q: %w", proj, err)
	}
	return len(cs.Items), nil
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return strings.TrimPrefix(names[0], "/")
}

func shortID(id string) string { return id[:min(12, len(id))] }

// ServiceAt names the service of the project's container that has address
// ip on one of its networks, or "" when none has. The proxy uses it to
// know which container opened a connection.
func (b *Backend) ServiceAt(ctx context.Context, proj string, ip netip.Addr) string {
	res, err := b.cli.ContainerList(ctx, client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", LabelProject+"="+proj),
	})
	if err != nil {
		return ""
	}
	for _, c := range res.Items {
		if c.NetworkSettings == nil || c.Labels[LabelRole] == roleAmbassador {
			// An ambassador calls only on behalf of others, whom its
			// PROXY line names; it is never the caller itself.
			continue
		}
		for _, ep := range c.NetworkSettings.Networks {
			if ep != nil && ep.IPAddress == ip {
				return c.Labels[LabelService]
			}
		}
	}
	return ""
}

// PublishedPorts maps each service of the project that has a running
// container to the host ports that container publishes on 127.0.0.1, by
// target port (TCP, first replica). A new supervisor uses them as its
// private ports, so that the containers it takes over keep their config
// hash and are not recreated.
func (b *Backend) PublishedPorts(ctx context.Context, proj string) (map[string]map[uint16]uint16, error) {
	res, err := b.cli.ContainerList(ctx, client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", LabelProject+"="+proj, composeNumber+"=1"),
	})
	if err != nil {
		return nil, fmt.Errorf("listing containers of project %q: %w", proj, err)
	}
	out := map[string]map[uint16]uint16{}
	for _, c := range res.Items {
		svc := c.Labels[LabelService]
		if svc == "" || c.Labels[LabelRole] == roleAmbassador {
			continue
		}
		if c.Labels[LabelStandby] != "" && strings.Contains(firstName(c.Names), "-next-") {
			continue // a standby that has not taken over: not the service's
		}
		for _, pt := range c.Ports {
			if pt.Type != "tcp" || pt.PublicPort == 0 || !pt.IP.IsLoopback() {
				continue
			}
			if out[svc] == nil {
				out[svc] = map[uint16]uint16{}
			}
			out[svc][pt.PrivatePort] = pt.PublicPort
		}
	}
	return out, nil
}

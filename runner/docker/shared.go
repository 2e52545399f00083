package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// Shared ambassadors: when the runner says which services of the project
// get an ambassador (runner.Spec.Ambassadors), one container serves all
// of them, <project>-ambassador: it joins each of their networks with all
// their names there, and listens on all their ports. Services whose ports
// collide (two that listen on 8080) cannot share one listener, so each
// collision puts the later service in a second one, <project>-ambassador-2,
// and so on. It is planned and started once per project, at the first
// start or preparation of any service, so that it is up beside the first
// layer rather than one more container start in every layer; services
// wait for it before they count as started. It stays through the stop of
// a single service (callers by name then reach the proxy, which says the
// service is down) and goes last, at down, with the project's networks.
//
// A service joins only when its image is there when the plan is made
// (the image's EXPOSE ports are relayed too, so they must be known): one
// that is built or pulled later gets an ambassador of its own, as does
// every service when the runner gives no Ambassadors (a spec made by hand).

// sharedAmbassadors is the shared ambassadors of one project.
type sharedAmbassadors struct {
	members map[string]int // service → index of its ambassador in plans
	plans   []*ambassadorPlan
	ready   chan struct{} // closed once all are up (or failed: err)
	err     error
}

// sharedName is the container name of the project's n-th shared
// ambassador (0 first).
func sharedName(p *project.Project, n int) string {
	if n == 0 {
		return p.Name + "-ambassador"
	}
	return p.Name + "-ambassador-" + strconv.Itoa(n+1)
}

// joinShared reports whether spec's service is served by a shared
// ambassador of its project, planning and starting them (in the
// background) at the project's first call.
func (b *Backend) joinShared(ctx context.Context, spec runner.Spec) (*sharedAmbassadors, bool) {
	if len(spec.Ambassadors) == 0 || spec.Ambassador == nil {
		return nil, false
	}
	p := spec.Project
	b.mu.Lock()
	sa := b.shared[p.Name]
	b.mu.Unlock()
	if sa == nil {
		// Planned outside b.mu (it asks the engine); the first plan kept
		// wins, so every service sees the same one.
		plan := b.planShared(ctx, spec)
		b.mu.Lock()
		if sa = b.shared[p.Name]; sa == nil {
			sa = plan
			b.shared[p.Name] = sa
			if len(sa.plans) > 0 {
				go b.startShared(context.WithoutCancel(ctx), spec, sa)
			} else {
				close(sa.ready)
			}
		}
		b.mu.Unlock()
	}
	_, ok := sa.members[spec.Service.Name]
	return sa, ok
}

// planShared plans the project's shared ambassadors from every service
// that gets one and whose image is there, in the file's order.
func (b *Backend) planShared(ctx context.Context, spec runner.Spec) *sharedAmbassadors {
	p := spec.Project
	sa := &sharedAmbassadors{members: map[string]int{}, ready: make(chan struct{})}
	ref, ambImageID, err := b.ambassadorImage(ctx)
	if err != nil {
		return sa // Start says why, service by service
	}
	type group struct {
		relays map[uint16]Relay
		nets   []attachment
	}
	var groups []*group
	for _, svc := range p.Services {
		amb := spec.Ambassadors[svc.Name]
		one := runner.Spec{Project: p, Service: svc, Ambassador: amb}
		if amb == nil || !wantsAmbassador(one) {
			continue
		}
		img, err := b.cli.ImageInspect(ctx, imageName(p, svc))
		if err != nil {
			continue // built or pulled later: an ambassador of its own
		}
		var exposed []string
		if img.Config != nil {
			exposed = slices.Sorted(maps.Keys(img.Config.ExposedPorts))
		}
		relays := serviceRelays(one, exposed)
		k := slices.IndexFunc(groups, func(g *group) bool {
			for port := range relays {
				if _, taken := g.relays[port]; taken {
					return false
				}
			}
			return true
		})
		if k < 0 {
			groups = append(groups, &group{relays: map[uint16]Relay{}})
			k = len(groups) - 1
		}
		g := groups[k]
		maps.Copy(g.relays, relays)
		for _, a := range serviceNetworks(p, svc) {
			i := slices.IndexFunc(g.nets, func(n attachment) bool { return n.Name == a.Name })
			if i < 0 {
				g.nets = append(g.nets, attachment{Key: a.Key, Name: a.Name})
				i = len(g.nets) - 1
			}
			for _, al := range a.Aliases {
				if !slices.Contains(g.nets[i].Aliases, al) {
					g.nets[i].Aliases = append(g.nets[i].Aliases, al)
				}
			}
		}
		sa.members[svc.Name] = k
	}
	for k, g := range groups {
		// The primary network must reach the proxy: not an internal one.
		slices.SortStableFunc(g.nets, func(x, y attachment) int {
			xi, yi := p.Compose.Networks[x.Key].Internal, p.Compose.Networks[y.Key].Internal
			switch {
			case xi == yi:
				return 0
			case yi:
				return -1
			}
			return 1
		})
		var args []string
		for _, port := range slices.Sorted(maps.Keys(g.relays)) {
			r := g.relays[port]
			flag := "--direct"
			if r.Proxy {
				flag = "--relay"
			}
			args = append(args, flag, r.String())
		}
		labels := projectLabels(p)
		labels[LabelRole] = roleAmbassador
		cfg := &container.Config{Image: ref, Cmd: args, Labels: labels}
		host := &container.HostConfig{
			RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
			ExtraHosts:     []string{hostGateway},
			NetworkMode:    container.NetworkMode(g.nets[0].Name),
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			CapAdd:         []string{"NET_BIND_SERVICE"},
		}
		hcfg := *cfg
		hcfg.Image = ambImageID
		data, err := json.Marshal(struct {
			Config *container.Config
			Host   *container.HostConfig
			Nets   []attachment
		}{&hcfg, host, g.nets})
		if err != nil {
			return &sharedAmbassadors{members: map[string]int{}, ready: make(chan struct{})}
		}
		sum := sha256.Sum256(data)
		hash := hex.EncodeToString(sum[:])
		labels[LabelConfigHash] = hash
		labels[composeConfigHash] = hash
		sa.plans = append(sa.plans, &ambassadorPlan{name: sharedName(p, k), pl: &plan{config: cfg, host: host, nets: g.nets, hash: hash}})
	}
	return sa
}

// serviceRelays are the listeners an ambassador needs for one service:
// each fronted port to the proxy, each other TCP port it declares or its
// image exposes straight to the service's own containers.
func serviceRelays(spec runner.Spec, imageExposed []string) map[uint16]Relay {
	svc := spec.Service
	relays := map[uint16]Relay{}
	for port, to := range spec.Ambassador.Relay {
		relays[port] = Relay{Port: port, To: to, Proxy: true}
	}
	direct := func(port uint16) {
		if _, ok := relays[port]; !ok && port != 0 {
			relays[port] = Relay{Port: port, To: net.JoinHostPort(realAlias(svc.Name), strconv.Itoa(int(port)))}
		}
	}
	for _, pt := range svc.Ports {
		if pt.Protocol != "udp" {
			direct(uint16(pt.Target))
		}
	}
	for _, e := range append(slices.Clone(svc.Compose.Expose), imageExposed...) {
		pr, err := network.ParsePortRange(e)
		if err != nil || pr.Proto() != network.TCP || int(pr.End())-int(pr.Start()) >= maxExposeRange {
			continue
		}
		for port := int(pr.Start()); port <= int(pr.End()); port++ {
			direct(uint16(port))
		}
	}
	return relays
}

// startShared makes sure each shared ambassador runs with its plan
// (adopting one that does, replacing one that does not) and listens, and
// then closes sa.ready.
func (b *Backend) startShared(ctx context.Context, spec runner.Spec, sa *sharedAmbassadors) {
	defer close(sa.ready)
	ctx, cancel := context.WithTimeout(ctx, opTimeout+ambassadorReady)
	defer cancel()
	p := spec.Project
	errs := make([]error, len(sa.plans))
	done := make(chan int, len(sa.plans))
	for k, ap := range sa.plans {
		go func() {
			defer func() { done <- k }()
			for svc, g := range sa.members {
				if g == k {
					if err := b.ensureNetworks(ctx, p, p.Service(svc)); err != nil {
						errs[k] = err
						return
					}
				}
			}
			errs[k] = b.runShared(ctx, p, ap)
		}()
	}
	for range sa.plans {
		<-done
	}
	sa.err = errors.Join(errs...)
}

// runShared adopts ap's container when it runs with the same plan, else
// (re)creates and starts it and waits until it listens.
func (b *Backend) runShared(ctx context.Context, p *project.Project, ap *ambassadorPlan) error {
	res, err := b.cli.ContainerInspect(ctx, ap.name, client.ContainerInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("inspecting container %s: %w", ap.name, err)
	default:
		c := res.Container
		if c.Config == nil || c.Config.Labels[LabelProject] != p.Name || c.Config.Labels[LabelRole] != roleAmbassador {
			break // create says who is in the way
		}
		if c.State != nil && c.State.Running && c.Config.Labels[LabelConfigHash] == ap.pl.hash {
			ap.id = c.ID
			return nil
		}
		if err := b.removeContainer(ctx, c.ID); err != nil {
			return err
		}
	}
	id, err := b.create(ctx, ap.pl, ap.name, 0)
	if err != nil {
		return fmt.Errorf("creating container %s: %w", ap.name, err)
	}
	ap.id = id
	// The output is read from the start, so that the ready line is not
	// missed; the stream is followed only until then.
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	b.ambAddrs.starting()
	_, err = b.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
	b.ambAddrs.started()
	if err != nil {
		return fmt.Errorf("starting container %s: %w", ap.name, err)
	}
	rc, err := b.cli.ContainerLogs(lctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return nil // nothing to wait on: callers that come too soon retry
	}
	defer rc.Close()
	ready := make(chan struct{})
	w := &ambassadorLog{w: io.Discard, ready: ready}
	ended := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(w, w, rc)
		ended <- err
	}()
	t := time.NewTimer(ambassadorReady)
	defer t.Stop()
	select {
	case <-ready:
		return nil
	case err := <-ended:
		return fmt.Errorf("ambassador %s ended before it listened (%v)", ap.name, err)
	case <-t.C:
		return fmt.Errorf("ambassador %s did not listen within %s", ap.name, ambassadorReady)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// await waits until the project's shared ambassadors are up.
func (sa *sharedAmbassadors) await(ctx context.Context) error {
	select {
	case <-sa.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if sa.err != nil {
		return fmt.Errorf("the project's ambassador: %w", sa.err)
	}
	return nil
}

// forgetShared drops the project's shared plan: Down removed its
// containers, and the next up plans again.
func (b *Backend) forgetShared(proj string) {
	b.mu.Lock()
	delete(b.shared, proj)
	b.mu.Unlock()
}

var _ runner.Quitter = (*Backend)(nil)

// Quit implements runner.Quitter: every service of the project has ended,
// so its shared ambassadors are removed now, beside the services' own
// containers; Down waits for that.
func (b *Backend) Quit(proj string) {
	b.mu.Lock()
	sa := b.shared[proj]
	b.mu.Unlock()
	if sa == nil {
		return
	}
	b.quitting.Go(func() {
		<-sa.ready // not removed under its start (which is bounded)
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, ap := range sa.plans {
			if ap.id != "" {
				wg.Go(func() { _ = b.removeContainer(ctx, ap.id) })
			}
		}
		wg.Wait()
	})
}

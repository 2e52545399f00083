package docker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
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

// Ambassadors: how calls between containers by service name become
// traced hops. A container service that the proxy fronts (runner.Spec
// Ambassador is set) gets a second, tiny container on the same networks,
// <project>-<service>-ambassador, which takes over the service's names;
// the service's own container keeps only its container name and the
// private alias devstack-real-<service>.
//
//	a ──http://b:8080──▶ b-ambassador :8080 ──PROXY TCP4 <a's ip> …──▶ proxy <gateway>:<declared>
//	                                                                     │ records a → b
//	                                                                     ▼
//	                                                 b (published on 127.0.0.1:<private>)
//
// The ambassador runs `devstack ambassador` (relay.go) from an image made
// of the running devstack binary (ambimage.go). Ports the proxy does not
// front (expose:, the image's EXPOSE, ports without a fixed host port)
// are passed straight to devstack-real-<service>, so that nothing that
// answered by name before stops answering; they are not traced.
//
// The ambassador outlives a crash of the service's container (the next
// Start adopts it, and callers meanwhile reach the proxy, which holds
// their requests while the service restarts); Stop removes it with the
// service's containers, and Down with the rest of the project.

// ambassadorReady bounds the wait for a new ambassador's ReadyLine.
const ambassadorReady = 15 * time.Second

// maxExposeRange bounds the ports taken from one expose: range: each is a
// listener of the ambassador.
const maxExposeRange = 256

// realAlias is the private DNS name of a service's own containers while
// an ambassador answers to the service's names.
func realAlias(service string) string { return "devstack-real-" + service }

func ambassadorName(p *project.Project, svc *project.Service) string {
	return p.Name + "-" + svc.Name + "-ambassador"
}

// wantsAmbassador reports whether spec's service gets an ambassador: one
// is asked for, the service has no UDP port (which the ambassador could
// not carry, and which must keep answering by name), and it joins project
// networks (not network_mode), at least one of them not internal, since
// an ambassador must reach the proxy on the host.
func wantsAmbassador(spec runner.Spec) bool {
	if spec.Ambassador == nil || len(spec.Ambassador.Relay) == 0 {
		return false
	}
	svc := spec.Service
	for _, pt := range svc.Ports {
		if pt.Protocol == "udp" {
			return false
		}
	}
	for _, e := range svc.Compose.Expose {
		if strings.HasSuffix(strings.ToLower(e), "/udp") {
			return false
		}
	}
	for _, a := range serviceNetworks(spec.Project, svc) {
		if !spec.Project.Compose.Networks[a.Key].Internal {
			return true
		}
	}
	return false
}

// privateNets are the service's networks with the service's names taken
// over by its ambassador: its containers answer to realAlias only.
func privateNets(nets []attachment, service string) []attachment {
	out := slices.Clone(nets)
	for i := range out {
		out[i].Aliases = []string{realAlias(service)}
	}
	return out
}

// ambassadorPlan is the ambassador container of one service.
type ambassadorPlan struct {
	name string
	pl   *plan
	id   string // the container, once a shared one runs (shared.go)
}

// planAmbassador makes (once) the ambassador image and plans the
// container: one relay per fronted port, each connection prefixed with a
// PROXY line naming the caller (the proxy reads it whatever the protocol,
// TCP services included), and one direct relay per other TCP port of the
// service. imageID is the service's image, for its EXPOSE; "" when no
// container stands behind the ambassador (Front), which then relays only
// to the proxy.
func (b *Backend) planAmbassador(ctx context.Context, spec runner.Spec, imageID string) (*ambassadorPlan, error) {
	p, svc := spec.Project, spec.Service
	ref, ambImageID, err := b.ambassadorImage(ctx)
	if err != nil {
		return nil, err
	}
	relays := map[uint16]Relay{}
	for port, to := range spec.Ambassador.Relay {
		relays[port] = Relay{Port: port, To: to, Proxy: true}
	}
	direct := func(port uint16) {
		if _, ok := relays[port]; !ok && port != 0 && imageID != "" {
			relays[port] = Relay{Port: port, To: net.JoinHostPort(realAlias(svc.Name), strconv.Itoa(int(port)))}
		}
	}
	for _, pt := range svc.Ports {
		if pt.Protocol != "udp" {
			direct(uint16(pt.Target))
		}
	}
	exposed := slices.Clone(svc.Compose.Expose)
	if imageID == "" {
		exposed = nil
	} else if img, err := b.cli.ImageInspect(ctx, imageID); err == nil && img.Config != nil {
		exposed = append(exposed, slices.Sorted(maps.Keys(img.Config.ExposedPorts))...)
	}
	for _, e := range exposed {
		pr, err := network.ParsePortRange(e)
		if err != nil || pr.Proto() != network.TCP || int(pr.End())-int(pr.Start()) >= maxExposeRange {
			continue
		}
		for port := int(pr.Start()); port <= int(pr.End()); port++ {
			direct(uint16(port))
		}
	}
	args := []string{}
	for _, port := range slices.Sorted(maps.Keys(relays)) {
		r := relays[port]
		flag := "--direct"
		if r.Proxy {
			flag = "--relay"
		}
		args = append(args, flag, r.String())
	}

	labels := serviceLabels(p, svc)
	labels[LabelRole] = roleAmbassador
	cfg := &container.Config{Image: ref, Cmd: args, Labels: labels}
	nets := serviceNetworks(p, svc)
	host := &container.HostConfig{
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
		ExtraHosts:     []string{hostGateway},
		NetworkMode:    container.NetworkMode(nets[0].Name),
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		CapAdd:         []string{"NET_BIND_SERVICE"}, // target ports below 1024
	}
	hcfg := *cfg
	hcfg.Image = ambImageID
	data, err := json.Marshal(struct {
		Config *container.Config
		Host   *container.HostConfig
		Nets   []attachment
	}{&hcfg, host, nets})
	if err != nil {
		return nil, fmt.Errorf("hashing the ambassador configuration of service %q: %w", svc.Name, err)
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	labels[LabelConfigHash] = hash
	labels[composeConfigHash] = hash
	return &ambassadorPlan{name: ambassadorName(p, svc), pl: &plan{config: cfg, host: host, nets: nets, hash: hash}}, nil
}

// removeAmbassador removes the service's ambassador, if it has one: a
// service started without one must answer to its names itself.
func (b *Backend) removeAmbassador(ctx context.Context, p *project.Project, svc *project.Service) error {
	res, err := b.cli.ContainerInspect(ctx, ambassadorName(p, svc), client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspecting the ambassador of service %q: %w", svc.Name, err)
	}
	if c := res.Container.Config; c == nil || c.Labels[LabelProject] != p.Name || c.Labels[LabelRole] != roleAmbassador {
		return nil // not ours: creating one would have said so
	}
	return b.removeContainer(ctx, res.Container.ID)
}

// startAmbassador adopts the service's ambassador when it runs with the
// same configuration, else (re)creates and starts it and waits until it
// listens. The instance follows its output into the service's status log.
func (i *Instance) startAmbassador(ctx context.Context, ap *ambassadorPlan) error {
	b, p := i.b, i.spec.Project
	if err := b.preparedStart(ctx, ap.name); err != nil {
		return err
	}
	res, err := b.cli.ContainerInspect(ctx, ap.name, client.ContainerInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("inspecting container %s: %w", ap.name, err)
	default:
		c := res.Container
		ours := c.Config != nil && c.Config.Labels[LabelProject] == p.Name && c.Config.Labels[LabelRole] == roleAmbassador
		if !ours {
			break // create says who is in the way
		}
		if c.State != nil && c.State.Running && c.Config.Labels[LabelConfigHash] == ap.pl.hash && b.takePrepared(c.ID) {
			// Started by Prepare while the service waited: follow it
			// from its first line, as one started here.
			i.amb = &replica{id: c.ID, name: ap.name}
			return i.awaitAmbassador(ctx)
		}
		if c.State != nil && c.State.Running && c.Config.Labels[LabelConfigHash] == ap.pl.hash {
			fmt.Fprintf(i.spec.Status, "ambassador %s is up to date; reattaching\n", ap.name)
			i.amb = &replica{id: c.ID, name: ap.name, adopted: true}
			go i.followAmbassador(i.amb, nil, nil)
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
	i.amb = &replica{id: id, name: ap.name}
	b.ambAddrs.starting()
	_, err = b.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
	b.ambAddrs.started()
	if err != nil {
		return fmt.Errorf("starting container %s: %w", ap.name, err)
	}
	return i.awaitAmbassador(ctx)
}

// awaitAmbassador follows the just started ambassador i.amb and waits
// until it listens.
func (i *Instance) awaitAmbassador(ctx context.Context) error {
	ap := i.amb
	ready, ended := make(chan struct{}), make(chan error, 1)
	go i.followAmbassador(i.amb, ready, ended)
	t := time.NewTimer(ambassadorReady)
	defer t.Stop()
	select {
	case <-ready:
		return nil
	case err := <-ended:
		if errors.Is(err, errNoLogs) {
			// Nothing to wait on: the relay is up within milliseconds, and
			// a caller that comes sooner is refused and retries, as with
			// any service that starts.
			fmt.Fprintf(i.spec.Status, "not waiting for ambassador %s to listen: %v\n", ap.name, err)
			return nil
		}
		return fmt.Errorf("ambassador %s ended before it listened (%v); its output is above", ap.name, err)
	case <-t.C:
		return fmt.Errorf("ambassador %s did not listen within %s; its output is above", ap.name, ambassadorReady)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errNoLogs is what followAmbassador ends with when the engine cannot
// show the ambassador's output (a logging driver without reads).
var errNoLogs = errors.New("the engine does not show its output")

// followAmbassador copies the ambassador's output into the service's
// status log, "ambassador: " first, closes ready at its ReadyLine and
// sends why the output ended to ended. It runs until the ambassador stops
// or the instance ends; an ambassador that stops while the service runs
// is reported, since the service's names then answer no more.
func (i *Instance) followAmbassador(r *replica, ready chan<- struct{}, ended chan<- error) {
	end := func(err error) {
		if ended != nil {
			ended <- err
		}
	}
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true}
	if r.adopted {
		opts.Tail = "0"
	}
	rc, err := i.b.cli.ContainerLogs(i.ctx, r.id, opts)
	if err != nil {
		end(fmt.Errorf("%w: %w", errNoLogs, err))
		return
	}
	defer rc.Close()
	w := &ambassadorLog{w: i.spec.Status, ready: ready}
	_, err = stdcopy.StdCopy(w, w, rc)
	w.flush()
	if i.ctx.Err() != nil {
		end(i.ctx.Err())
		return
	}
	why := "its output ended"
	if err != nil {
		why = err.Error()
	}
	ictx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if res, err := i.b.cli.ContainerInspect(ictx, r.id, client.ContainerInspectOptions{}); err == nil && res.Container.State != nil && !res.Container.State.Running {
		why = fmt.Sprintf("exit code %d", res.Container.State.ExitCode)
		fmt.Fprintf(i.spec.Status, "ambassador %s stopped (%s): calls to %q by name get no answer until the service restarts\n", r.name, why, i.spec.Service.Name)
	}
	end(errors.New(why))
}

// ambassadorLog writes whole lines with a prefix and spots ReadyLine.
type ambassadorLog struct {
	w       io.Writer
	ready   chan<- struct{}
	partial []byte
	once    sync.Once
}

func (a *ambassadorLog) Write(b []byte) (int, error) {
	a.partial = append(a.partial, b...)
	for {
		nl := bytes.IndexByte(a.partial, '\n')
		if nl < 0 {
			return len(b), nil
		}
		line := string(a.partial[:nl])
		a.partial = a.partial[nl+1:]
		fmt.Fprintf(a.w, "ambassador: %s\n", line)
		if a.ready != nil && strings.HasPrefix(line, ReadyLine) {
			a.once.Do(func() { close(a.ready) })
		}
	}
}

func (a *ambassadorLog) flush() {
	if len(a.partial) > 0 {
		fmt.Fprintf(a.w, "ambassador: %s\n", a.partial)
		a.partial = nil
	}
}

// ambassadorAddrs caches where a project's ambassadors are.
type ambassadorAddrs struct {
	mu      sync.Mutex
	proj    string
	addrs   map[netip.Addr]bool
	fetched time.Time
	starts  int // ambassadors being started
}

// starting and started bracket an ambassador's start. Until it ends, an
// address not known is always looked up: the new ambassador gets its
// address during the start and may relay a connection at once, and that
// connection's PROXY line must not be taken for the client's bytes.
func (c *ambassadorAddrs) starting() {
	c.mu.Lock()
	c.starts++
	c.mu.Unlock()
}

func (c *ambassadorAddrs) started() {
	c.mu.Lock()
	c.starts--
	c.fetched = time.Time{}
	c.mu.Unlock()
}

const (
	ambassadorMissRefresh = time.Second      // an unknown address is looked up again after this
	ambassadorHitRefresh  = 10 * time.Second // a known one is trusted this long
)

// IsAmbassador reports whether ip is the address of one of proj's
// ambassador containers. Only their connections to the proxy start with a
// PROXY line naming the real client: a container calling the proxy
// directly (host.docker.internal) sends none, and must not be able to
// name another service as the caller. Lookups are cached, so a stream of
// connections from other containers costs at most one engine call a
// second.
func (b *Backend) IsAmbassador(ctx context.Context, proj string, ip netip.Addr) bool {
	ip = ip.Unmap()
	c := &b.ambAddrs
	c.mu.Lock()
	defer c.mu.Unlock()
	age := time.Since(c.fetched)
	if c.proj == proj && (c.addrs[ip] && age < ambassadorHitRefresh || !c.addrs[ip] && c.starts == 0 && age < ambassadorMissRefresh) {
		return c.addrs[ip]
	}
	res, err := b.cli.ContainerList(ctx, client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", LabelProject+"="+proj, LabelRole+"="+roleAmbassador),
	})
	if err != nil {
		return c.proj == proj && c.addrs[ip] // keep what was known while the engine does not answer
	}
	c.proj, c.fetched, c.addrs = proj, time.Now(), map[netip.Addr]bool{}
	for _, ctr := range res.Items {
		if ctr.NetworkSettings == nil {
			continue
		}
		for _, ep := range ctr.NetworkSettings.Networks {
			if ep != nil && ep.IPAddress.IsValid() {
				c.addrs[ep.IPAddress.Unmap()] = true
			}
		}
	}
	return c.addrs[ip]
}

package docker

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner/project"
)

// attachment is one network a service's containers join.
type attachment struct {
	Key     string   // the key under networks: ("default" for the implicit one)
	Name    string   // the engine's name, <project>_<key> unless name: is set
	Aliases []string // DNS names on it; the service name first
	// Links are links:, as "<container>:<alias>" (omitted when empty, so
	// that the hash of a container without links is unchanged).
	Links []string `json:",omitempty"`
}

// serviceNetworks lists the networks svc joins, the primary one first, as
// Compose does: the networks it declares (by priority), else default. A
// network_mode (host, none, service:x) means no networks of the project.
func serviceNetworks(p *project.Project, svc *project.Service) []attachment {
	if svc.Compose.NetworkMode != "" {
		return nil
	}
	keys := svc.Compose.NetworksByPriority()
	if len(keys) == 0 {
		keys = []string{"default"}
	}
	var out []attachment
	for _, k := range keys {
		a := attachment{Key: k, Name: networkName(p, k)}
		cfg := svc.Compose.Networks[k]
		if cfg.ServiceNameAliasEnabled() {
			a.Aliases = append(a.Aliases, svc.Name)
		}
		if cfg != nil {
			for _, al := range cfg.Aliases {
				if !slices.Contains(a.Aliases, al) {
					a.Aliases = append(a.Aliases, al)
				}
			}
		}
		out = append(out, a)
	}
	return out
}

func networkName(p *project.Project, key string) string {
	if n, ok := p.Compose.Networks[key]; ok && n.Name != "" {
		return n.Name
	}
	return p.Name + "_" + key
}

func volumeName(p *project.Project, key string) string {
	if v, ok := p.Compose.Volumes[key]; ok && v.Name != "" {
		return v.Name
	}
	return p.Name + "_" + key
}

// ensureNetworks creates the project networks svc joins, once per backend
// and name. It holds b.mu throughout, so that two services starting at
// once never both try to create <project>_default.
func (b *Backend) ensureNetworks(ctx context.Context, p *project.Project, svc *project.Service) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range serviceNetworks(p, svc) {
		if b.ensured["network/"+a.Name] {
			continue
		}
		if err := b.ensureNetwork(ctx, p, a.Key, a.Name); err != nil {
			return err
		}
		b.ensured["network/"+a.Name] = true
	}
	return nil
}

func (b *Backend) ensureNetwork(ctx context.Context, p *project.Project, key, name string) error {
	cfg := p.Compose.Networks[key] // zero value for an undeclared default
	if _, err := b.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspecting network %s: %w", name, err)
	}
	if cfg.External {
		return fmt.Errorf("network %s is declared external but does not exist; create it with `docker network create %s` or remove external: true", name, name)
	}
	labels := projectLabels(p)
	labels[composeNetwork] = key
	maps.Copy(labels, cfg.Labels)
	hashLabels(labels, cfg)
	opts := client.NetworkCreateOptions{
		Driver:     cfg.Driver,
		Options:    cfg.DriverOpts,
		Internal:   cfg.Internal,
		Attachable: cfg.Attachable,
		EnableIPv6: cfg.EnableIPv6,
		Labels:     labels,
	}
	ipam, err := ipamFor(cfg.Ipam)
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	opts.IPAM = ipam
	_, err = b.cli.NetworkCreate(ctx, name, opts)
	if err != nil && !cerrdefs.IsConflict(err) { // conflict: another devstack made it first
		return fmt.Errorf("creating network %s: %w", name, err)
	}
	return nil
}

func ipamFor(c types.IPAMConfig) (*network.IPAM, error) {
	if c.Driver == "" && len(c.Config) == 0 {
		return nil, nil
	}
	ipam := &network.IPAM{Driver: c.Driver, Options: c.Options}
	for _, pool := range c.Config {
		var ic network.IPAMConfig
		var err error
		if pool.Subnet != "" {
			if ic.Subnet, err = netip.ParsePrefix(pool.Subnet); err != nil {
				return nil, fmt.Errorf("ipam subnet: %w", err)
			}
		}
		if pool.IPRange != "" {
			if ic.IPRange, err = netip.ParsePrefix(pool.IPRange); err != nil {
				return nil, fmt.Errorf("ipam ip_range: %w", err)
			}
		}
		if pool.Gateway != "" {
			if ic.Gateway, err = netip.ParseAddr(pool.Gateway); err != nil {
				return nil, fmt.Errorf("ipam gateway: %w", err)
			}
		}
		ipam.Config = append(ipam.Config, ic)
	}
	return ipam, nil
}

// ensureVolumes creates the named volumes svc mounts, with the project's
// labels, once per backend and name.
func (b *Backend) ensureVolumes(ctx context.Context, p *project.Project, svc *project.Service) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, v := range svc.Compose.Volumes {
		if v.Type != types.VolumeTypeVolume || v.Source == "" {
			continue // binds, tmpfs and anonymous volumes need nothing up front
		}
		name := volumeName(p, v.Source)
		if b.ensured["volume/"+name] {
			continue
		}
		cfg := p.Compose.Volumes[v.Source]
		if cfg.External {
			if _, err := b.cli.VolumeInspect(ctx, name, client.VolumeInspectOptions{}); err != nil {
				return fmt.Errorf("volume %s of service %q is declared external but cannot be used: %w; create it with `docker volume create %s`", name, svc.Name, err, name)
			}
		} else {
			labels := projectLabels(p)
			labels[composeVolume] = v.Source
			maps.Copy(labels, cfg.Labels)
			hashLabels(labels, cfg)
			// Creating an existing volume is a no-op that returns it.
			_, err := b.cli.VolumeCreate(ctx, client.VolumeCreateOptions{
				Name: name, Driver: cfg.Driver, DriverOpts: cfg.DriverOpts, Labels: labels,
			})
			if err != nil {
				return fmt.Errorf("creating volume %s for service %q: %w", name, svc.Name, err)
			}
		}
		b.ensured["volume/"+name] = true
	}
	return nil
}

// HostGateway is the host's address on the default bridge, which
// host.docker.internal (host-gateway) resolves to inside containers. The
// proxy listens there too, so containers reach services that run as host
// processes.
func (b *Backend) HostGateway(ctx context.Context) (netip.Addr, error) {
	res, err := b.cli.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("inspecting the default bridge network: %w", err)
	}
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.Is4() {
			return c.Gateway, nil
		}
	}
	// Engines often leave the default bridge's gateway out of its IPAM
	// (20.10 does): it is the address of the bridge's interface, docker0,
	// which is on this host when the engine is.
	if ifi, err := net.InterfaceByName(cmp.Or(res.Network.Options["com.docker.network.bridge.name"], "docker0")); err == nil {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil || !pfx.Addr().Is4() {
				continue
			}
			for _, c := range res.Network.IPAM.Config {
				if c.Subnet.Contains(pfx.Addr()) {
					return pfx.Addr(), nil
				}
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("the default bridge network has no IPv4 gateway, and no interface of this host is on its subnet")
}

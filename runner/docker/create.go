package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// hostGateway is the extra host every container gets, so that a container
// calls a service running as a host process at host.docker.internal:<port>
// on Linux too (Docker Desktop resolves it already).
const hostGateway = "host.docker.internal:host-gateway"

// markerEnv is left out of the config hash: it changes with every run of
// devstack, and a container must not be recreated for that alone.
const markerEnv = "DEVSTACK_INSTANCE="

// plan is what the engine is asked to create for each replica, minus the
// per-replica name and number.
type plan struct {
	config *container.Config
	host   *container.HostConfig
	nets   []attachment
	hash   string // sha256 of everything above, the image ID included
	// platform is the service's platform:, nil when unset (the image's
	// own then); the image ID in the hash already stands for it.
	platform *ocispec.Platform
	// files are the secrets and configs copied in before it starts.
	files []project.File
}

// planFor turns a service into the engine's container configuration.
// imageID is part of the hash, so a rebuilt image recreates the container.
func planFor(spec runner.Spec, imageID string) (*plan, error) {
	p, svc := spec.Project, spec.Service
	sc := svc.Compose
	env := slices.Clone(spec.Env)
	slices.Sort(env)

	labels := serviceLabels(p, svc)
	maps.Copy(labels, sc.Labels)
	cfg := &container.Config{
		Image:       imageName(p, svc),
		Env:         env,
		Cmd:         sc.Command,
		Entrypoint:  sc.Entrypoint,
		WorkingDir:  sc.WorkingDir,
		User:        sc.User,
		Hostname:    sc.Hostname,
		Domainname:  sc.DomainName,
		Tty:         sc.Tty,
		OpenStdin:   sc.StdinOpen,
		StopSignal:  sc.StopSignal,
		Labels:      labels,
		Healthcheck: healthConfig(svc),
	}
	host := &container.HostConfig{
		// The runner restarts instances by the service's restart: policy,
		// with the same backoff for every backend; the engine must not.
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
		ExtraHosts:     extraHosts(sc.ExtraHosts),
		Init:           sc.Init,
		Privileged:     sc.Privileged,
		CapAdd:         sc.CapAdd,
		CapDrop:        sc.CapDrop,
		ReadonlyRootfs: sc.ReadOnly,
		SecurityOpt:    sc.SecurityOpt,
		Sysctls:        sc.Sysctls,
		ShmSize:        int64(sc.ShmSize),
		DNSSearch:      sc.DNSSearch,
		DNSOptions:     sc.DNSOpts,
		NetworkMode:    container.NetworkMode(networkMode(p, sc.NetworkMode)),
	}
	for _, d := range sc.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("service %q: dns %q is not an IP address", svc.Name, d)
		}
		host.DNS = append(host.DNS, a)
	}
	files, err := svc.Files(p)
	if err != nil {
		return nil, err
	}
	addLimits(host, sc)
	host.VolumesFrom = volumesFrom(p, sc)
	platform, err := platformOf(sc.Platform)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if err := addPorts(cfg, host, svc); err != nil {
		return nil, err
	}
	if err := addMounts(host, p, svc); err != nil {
		return nil, err
	}
	nets := serviceNetworks(p, svc)
	if l := links(p, sc); len(l) > 0 {
		for i := range nets {
			nets[i].Links = l
		}
	}
	var amb *runner.Ambassador
	if wantsAmbassador(spec) {
		// The ambassador answers to the service's names (ambassador.go).
		nets, amb = privateNets(nets, svc.Name), spec.Ambassador
	}
	if len(nets) > 0 {
		host.NetworkMode = container.NetworkMode(nets[0].Name)
	}

	// The hash covers what would make a running container differ from a
	// new one: everything above, with the image by ID, not by tag.
	hcfg := *cfg
	hcfg.Image = imageID
	hcfg.Env = slices.DeleteFunc(slices.Clone(env), func(e string) bool { return strings.HasPrefix(e, markerEnv) })
	data, err := json.Marshal(struct {
		Config     *container.Config
		Host       *container.HostConfig
		Nets       []attachment
		Ambassador *runner.Ambassador `json:",omitempty"` // where it relays
		Files      map[string]string  `json:",omitempty"` // secrets and configs
	}{&hcfg, host, nets, amb, filesHash(files)})
	if err != nil {
		return nil, fmt.Errorf("hashing the configuration of service %q: %w", svc.Name, err)
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	labels[LabelConfigHash] = hash
	labels[composeConfigHash] = hash
	return &plan{config: cfg, host: host, nets: nets, hash: hash, platform: platform, files: files}, nil
}

// networkMode resolves Compose's service:<name> to the container it means.
func networkMode(p *project.Project, mode string) string {
	if name, ok := strings.CutPrefix(mode, "service:"); ok {
		return "container:" + p.Name + "-" + name + "-1"
	}
	return mode
}

// healthConfig passes the Compose healthcheck to the engine, which runs it
// and reports through events. nil keeps the image's own HEALTHCHECK.
func healthConfig(svc *project.Service) *container.HealthConfig {
	raw := svc.Compose.HealthCheck
	if raw == nil {
		return nil
	}
	if raw.Disable || (len(raw.Test) > 0 && raw.Test[0] == "NONE") {
		return &container.HealthConfig{Test: []string{"NONE"}}
	}
	hc := svc.Healthcheck()
	if hc == nil {
		// Timings only: they tune the image's HEALTHCHECK, which the engine
		// keeps when Test is empty.
		dur := func(d *types.Duration) (out time.Duration) {
			if d != nil {
				out = time.Duration(*d)
			}
			return out
		}
		c := &container.HealthConfig{
			Interval: dur(raw.Interval), Timeout: dur(raw.Timeout),
			StartPeriod: dur(raw.StartPeriod), StartInterval: dur(raw.StartInterval),
		}
		if raw.Retries != nil {
			c.Retries = int(*raw.Retries)
		}
		return c
	}
	test := append([]string{"CMD"}, hc.Test.Args...)
	if hc.Test.Shell {
		test = []string{"CMD-SHELL", hc.Test.Args[0]}
	}
	return &container.HealthConfig{
		Test:          test,
		Interval:      hc.Interval,
		Timeout:       hc.Timeout,
		Retries:       hc.Retries,
		StartPeriod:   hc.StartPeriod,
		StartInterval: hc.StartInterval,
	}
}

// extraHosts are the service's extra_hosts plus host.docker.internal,
// unless the service maps that name itself.
func extraHosts(h types.HostsList) []string {
	out := h.AsList(":")
	if _, ok := h["host.docker.internal"]; !ok {
		out = append(out, hostGateway)
	}
	slices.Sort(out) // AsList iterates a map; the hash needs one order
	return out
}

// addPorts exposes and publishes the service's ports. Host IPs come from
// the project (127.0.0.1 unless the file names another address).
func addPorts(cfg *container.Config, host *container.HostConfig, svc *project.Service) error {
	n := replicas(svc)
	cfg.ExposedPorts = network.PortSet{}
	host.PortBindings = network.PortMap{}
	for _, e := range svc.Compose.Expose {
		port, err := network.ParsePort(e)
		if err != nil {
			return fmt.Errorf("service %q: expose %q: %w", svc.Name, e, err)
		}
		cfg.ExposedPorts[port] = struct{}{}
	}
	for _, pt := range svc.Ports {
		if pt.Published != 0 && n > 1 {
			return fmt.Errorf("service %q has %d replicas but publishes host port %d, which only one container can bind; remove the host port (write %q) to get one ephemeral port per replica, or run one replica",
				svc.Name, n, pt.Published, strconv.Itoa(int(pt.Target)))
		}
		port, ok := network.PortFrom(pt.Target, network.IPProtocol(pt.Protocol))
		if !ok {
			return fmt.Errorf("service %q: port %d/%s is not valid", svc.Name, pt.Target, pt.Protocol)
		}
		ip, err := netip.ParseAddr(pt.HostIP)
		if err != nil {
			return fmt.Errorf("service %q: host IP %q of port %d is not an IP address", svc.Name, pt.HostIP, pt.Target)
		}
		b := network.PortBinding{HostIP: ip}
		if pt.Published != 0 {
			b.HostPort = strconv.Itoa(int(pt.Published))
		}
		cfg.ExposedPorts[port] = struct{}{}
		host.PortBindings[port] = append(host.PortBindings[port], b)
	}
	return nil
}

// addMounts turns volumes: and tmpfs: into the engine's mounts. Binds
// that Compose would create on the host (short syntax) go through Binds,
// which creates a missing source directory the way `docker compose` does.
func addMounts(host *container.HostConfig, p *project.Project, svc *project.Service) error {
	for _, v := range svc.Compose.Volumes {
		switch v.Type {
		case types.VolumeTypeBind:
			if v.Bind != nil && bool(v.Bind.CreateHostPath) {
				b := v.Source + ":" + v.Target
				if v.ReadOnly {
					b += ":ro"
				}
				host.Binds = append(host.Binds, b)
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				return fmt.Errorf("service %q mounts %s, which does not exist: %w; create it or set bind.create_host_path", svc.Name, v.Source, err)
			}
			m := mount.Mount{Type: mount.TypeBind, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Bind != nil && v.Bind.Propagation != "" {
				m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
			}
			host.Mounts = append(host.Mounts, m)
		case types.VolumeTypeVolume:
			m := mount.Mount{Type: mount.TypeVolume, Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Source != "" {
				m.Source = volumeName(p, v.Source)
			}
			if v.Volume != nil {
				m.VolumeOptions = &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath}
			}
			host.Mounts = append(host.Mounts, m)
		case types.VolumeTypeTmpfs:
			m := mount.Mount{Type: mount.TypeTmpfs, Target: v.Target}
			if v.Tmpfs != nil {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: os.FileMode(v.Tmpfs.Mode)}
			}
			host.Mounts = append(host.Mounts, m)
		default:
			return fmt.Errorf("service %q: volume type %q is not supported by devstack; use bind, volume or tmpfs", svc.Name, v.Type)
		}
	}
	for _, t := range svc.Compose.Tmpfs {
		if host.Tmpfs == nil {
			host.Tmpfs = map[string]string{}
		}
		path, opts, _ := strings.Cut(t, ":")
		host.Tmpfs[path] = opts
	}
	return nil
}

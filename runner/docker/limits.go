package docker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/devstack/devstack/runner/project"
)

// addLimits applies the service's resource limits, as docker compose
// does: mem_limit, cpus, pids_limit, mem_reservation, cpu_shares and
// ulimits, or their deploy.resources forms (the consistency check made
// sure the two agree where both are set).
func addLimits(host *container.HostConfig, sc types.ServiceConfig) {
	r := &host.Resources
	r.Memory = int64(sc.MemLimit)
	r.NanoCPUs = int64(float64(sc.CPUS) * 1e9)
	r.MemoryReservation = int64(sc.MemReservation)
	r.CPUShares = sc.CPUShares
	pids := sc.PidsLimit
	if d := sc.Deploy; d != nil {
		if l := d.Resources.Limits; l != nil {
			r.Memory = max(r.Memory, int64(l.MemoryBytes))
			r.NanoCPUs = max(r.NanoCPUs, int64(float64(l.NanoCPUs)*1e9))
			pids = max(pids, l.Pids)
		}
		if res := d.Resources.Reservations; res != nil {
			r.MemoryReservation = max(r.MemoryReservation, int64(res.MemoryBytes))
		}
	}
	if pids != 0 {
		r.PidsLimit = &pids
	}
	for _, name := range slices.Sorted(mapsKeys(sc.Ulimits)) {
		u := sc.Ulimits[name]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		r.Ulimits = append(r.Ulimits, &container.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	if l := sc.Logging; l != nil {
		host.LogConfig = container.LogConfig{Type: l.Driver, Config: l.Options}
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// volumesFrom resolves volumes_from: a service name (its first replica's
// container) or container:NAME, each with an optional :ro or :rw.
func volumesFrom(p *project.Project, sc types.ServiceConfig) []string {
	var out []string
	for _, v := range sc.VolumesFrom {
		name, mode, _ := strings.Cut(v, ":")
		if name == "container" {
			name, mode, _ = strings.Cut(mode, ":")
		} else if s := p.Service(name); s != nil {
			name = containerName(p, s, 1)
		}
		if mode != "" {
			name += ":" + mode
		}
		out = append(out, name)
	}
	return out
}

// links turns links: ("db" or "db:database") into the engine's endpoint
// links, "<container>:<alias>", which give the linked container an extra
// name as this container sees it, on user-defined networks too.
func links(p *project.Project, sc types.ServiceConfig) []string {
	var out []string
	for _, l := range sc.Links {
		name, alias, ok := strings.Cut(l, ":")
		if !ok {
			alias = name
		}
		if s := p.Service(name); s != nil {
			name = containerName(p, s, 1)
		}
		out = append(out, name+":"+alias)
	}
	return out
}

// platformOf parses platform: (os/arch[/variant]); nil when unset.
func platformOf(s string) (*ocispec.Platform, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("platform %q: write os/arch[/variant], e.g. linux/amd64", s)
	}
	pl := &ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		pl.Variant = parts[2]
	}
	return pl, nil
}

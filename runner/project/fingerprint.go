package project

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// Fingerprint identifies what a project asks for: one hash per service
// (its resolved Compose config, x-devstack block, ports and dependencies)
// and one for the project-wide rest (networks, volumes, the project's
// x-devstack block). A running stack compares them with a freshly loaded
// file to tell which services changed since it started. The shell
// environment the file was loaded in is not part of it; only what it
// resolved to is.
type Fingerprint struct {
	Project  string            `json:"project"`
	Services map[string]string `json:"services"`
	// Disabled are the services of the file that its active profiles
	// leave out: a running stack that started one by name (`up -d tool`)
	// has not had it removed from the file.
	Disabled []string `json:"disabled,omitempty"`
}

// Fingerprint computes p's fingerprint.
func (p *Project) Fingerprint() Fingerprint {
	f := Fingerprint{Services: map[string]string{}}
	for _, s := range p.Services {
		if slices.ContainsFunc(s.Ports, func(pt Port) bool { return pt.Range != "" }) {
			// The port picked from a range is not what the file asks.
			c := *s
			c.Ports = slices.Clone(s.Ports)
			for i := range c.Ports {
				if c.Ports[i].Range != "" {
					c.Ports[i].Published = 0
				}
			}
			s = &c
		}
		f.Services[s.Name] = hashJSON(s)
	}
	rest := struct {
		Networks, Volumes, Configs, Secrets any
		X                                   ProjectExt
	}{X: p.X}
	if c := p.Compose; c != nil {
		rest.Networks, rest.Volumes, rest.Configs, rest.Secrets = c.Networks, c.Volumes, c.Configs, c.Secrets
	}
	f.Project = hashJSON(rest)
	if p.Compose != nil {
		for name := range p.Compose.DisabledServices {
			if _, on := f.Services[name]; !on {
				f.Disabled = append(f.Disabled, name)
			}
		}
		slices.Sort(f.Disabled)
	}
	return f
}

func hashJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only unsupported values fail (a func, a channel), and the model
		// has none; an error still makes a distinct, stable value.
		b = []byte("unmarshalable: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// Changes lists what differs from f to g, for a person to read: services
// changed, added and removed, and "project settings" for the rest. It is
// empty when nothing does.
func (f Fingerprint) Changes(g Fingerprint) (changed, added, removed []string, project bool) {
	for name, h := range g.Services {
		old, ok := f.Services[name]
		switch {
		case !ok:
			added = append(added, name)
		case old != h:
			changed = append(changed, name)
		}
	}
	for name := range f.Services {
		if _, ok := g.Services[name]; !ok && !slices.Contains(g.Disabled, name) {
			removed = append(removed, name)
		}
	}
	slices.Sort(changed)
	slices.Sort(added)
	slices.Sort(removed)
	return changed, added, removed, f.Project != g.Project
}

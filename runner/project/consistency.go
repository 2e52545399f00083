package project

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/errdefs"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
)

// placeholderImage stands in for the image a process service lacks, so
// that compose-go's consistency check, which insists on image or build,
// passes it and runs every other check unchanged.
const placeholderImage = "devstack.invalid/process-service"

// checkConsistency runs compose-go's own consistency check (the one
// docker compose runs on every load) with exactly one rule relaxed: a
// service may lack image and build, as a process service does. Load
// turns the check off in the real load (compose-go has no switch for one
// rule), so it runs here on a second decoding of the same merged model,
// in which image-less services get a placeholder image. Anything it
// refuses, Compose refuses: the error is positioned at the file and line
// of the key at fault.
func checkConsistency(ctx context.Context, po *cli.ProjectOptions, cp *types.Project, src *sources, substitute func(string, template.Mapping) (string, error)) error {
	details := types.ConfigDetails{WorkingDir: cp.WorkingDir, Environment: po.Environment}
	for _, f := range cp.ComposeFiles {
		if f == "-" {
			return nil // stdin was read once, by the real load
		}
		details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{Filename: f})
	}
	// Not po.LoadModel: it loses the environment (compose-go v2.16), so
	// the model would be interpolated without .env and the OS's variables.
	dict, err := loader.LoadModelWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName(cp.Name, true)
		o.Profiles = cp.Profiles
		o.Interpolate.Substitute = substitute
	})
	if err != nil {
		return src.composeError(err)
	}
	if services, ok := dict["services"].(map[string]any); ok {
		for _, v := range services {
			svc, ok := v.(map[string]any)
			if !ok {
				continue
			}
			_, image := svc["image"]
			_, build := svc["build"]
			_, provider := svc["provider"]
			if !image && !build && !provider {
				svc["image"] = placeholderImage
			}
		}
	}
	opts := &loader.Options{
		Profiles: cp.Profiles,
		// Only the check is wanted: skip the work that follows it.
		SkipResolveEnvironment: true,
		SkipResolveLabels:      true,
	}
	opts.SetProjectName(cp.Name, true)
	_, err = loader.ModelToProject(dict, opts, types.ConfigDetails{WorkingDir: cp.WorkingDir, Environment: cp.Environment})
	if err != nil {
		return src.consistencyError(cp, err)
	}
	return nil
}

// consistencyRule positions one of compose-go's consistency messages:
// where returns the service, the key path below it (or below the top
// level when service is "") and the message's fact and fix.
type consistencyRule struct {
	re    *regexp.Regexp
	where func(cp *types.Project, m []string) (service string, path []string, msg string)
}

var consistencyRules = []consistencyRule{
	{regexp.MustCompile(`^service "([^"]+)" declares mutualy exclusive dockerfile and dockerfile_inline`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return m[1], []string{"build", "dockerfile_inline"}, "build sets both dockerfile and dockerfile_inline, which exclude each other; keep one of them"
		}},
	{regexp.MustCompile(`^service "([^"]+)" declares unknown service "([^"]+)" as additional contexts (\S+)`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return m[1], []string{"build", "additional_contexts", m[3]}, fmt.Sprintf(
				"build.additional_contexts %s names service %q, which is not defined; name a service of the project that has build:", m[3], m[2])
		}},
	{regexp.MustCompile(`^service "([^"]+)" declares non-buildable service "([^"]+)" as additional contexts (\S+)`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return m[1], []string{"build", "additional_contexts", m[3]}, fmt.Sprintf(
				"build.additional_contexts %s names service %q, which has no build:; name a service that builds an image", m[3], m[2])
		}},
	{regexp.MustCompile(`^service\.build\.platforms MUST include service\.platform "([^"]*)"`),
		func(cp *types.Project, m []string) (string, []string, string) {
			name := findService(cp, func(s types.ServiceConfig) bool {
				return s.Build != nil && s.Platform == m[1] && len(s.Build.Platforms) > 0 && !slices.Contains(s.Build.Platforms, m[1])
			})
			return name, []string{"platform"}, fmt.Sprintf("platform %q is not one of build.platforms; add it to build.platforms or change platform", m[1])
		}},
	{regexp.MustCompile("^service (\\S+) declares mutually exclusive `network_mode` and `networks`"),
		func(_ *types.Project, m []string) (string, []string, string) {
			return m[1], []string{"network_mode"}, "sets both network_mode and networks, which exclude each other; remove one of them"
		}},
	{regexp.MustCompile(`^service "([^"]+)" refers to undefined network (\S+)$`),
		func(cp *types.Project, m []string) (string, []string, string) {
			return m[1], []string{"networks", m[2]}, fmt.Sprintf("uses network %q, which is not defined; declare it under the top-level networks: key (networks: {%s: {}}) or remove it%s",
				m[2], m[2], didYouMean(m[2], slices.Collect(maps.Keys(cp.Networks))))
		}},
	{regexp.MustCompile(`^service "([^"]+)" not found for network_mode 'service:`),
		func(cp *types.Project, m []string) (string, []string, string) {
			name := findService(cp, func(s types.ServiceConfig) bool { return s.NetworkMode == types.ServicePrefix+m[1] })
			return name, []string{"network_mode"}, fmt.Sprintf("network_mode \"service:%s\" names service %q, which is not defined; name a service of the project", m[1], m[1])
		}},
	{regexp.MustCompile(`^service "([^"]+)" refers to undefined volume (\S+)$`),
		func(cp *types.Project, m []string) (string, []string, string) {
			path := []string{"volumes"}
			for i, v := range cp.Services[m[1]].Volumes {
				if v.Type == types.VolumeTypeVolume && v.Source == m[2] {
					path = append(path, strconv.Itoa(i))
					break
				}
			}
			return m[1], path, fmt.Sprintf("mounts volume %q, which is not defined; declare it under the top-level volumes: key (volumes: {%s: {}}), or write ./%s for a directory of the project%s",
				m[2], m[2], m[2], didYouMean(m[2], slices.Collect(maps.Keys(cp.Volumes))))
		}},
	{regexp.MustCompile(`^service "([^"]+)" refers to undefined (build secret|config|model|secret) (\S+)$`),
		func(cp *types.Project, m []string) (string, []string, string) {
			key, top, known := m[2]+"s", m[2]+"s", slices.Collect(maps.Keys(cp.Secrets))
			switch m[2] {
			case "build secret":
				key, top = "build.secrets", "secrets"
			case "config":
				known = slices.Collect(maps.Keys(cp.Configs))
			case "model":
				known = slices.Collect(maps.Keys(cp.Models))
			}
			path := strings.Split(key, ".")
			if i := refIndex(cp.Services[m[1]], m[2], m[3]); i >= 0 {
				path = append(path, strconv.Itoa(i))
			}
			return m[1], path, fmt.Sprintf("uses %s %q, which is not defined; declare it under the top-level %s: key%s",
				m[2], m[3], top, didYouMean(m[3], known))
		}},
	{regexp.MustCompile(`^services\.([^:]+): can't set distinct values on '([^']+)' and '([^']+)'`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return m[1], strings.Split(m[2], "."), fmt.Sprintf("sets both %s and %s to different values; keep one of them", m[2], m[3])
		}},
	{regexp.MustCompile(`^services\.(.+)\.(scale|deploy\.replicas): must be greater than or equal to 0`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return m[1], strings.Split(m[2], "."), fmt.Sprintf("%s is negative; use 0 or more", m[2])
		}},
	// compose-go swaps the two values in this one: "services.<attr>: ...
	// container_name and <service> as ...".
	{regexp.MustCompile(`^services\.(scale|deploy\.replicas): can't set container_name and (\S+) as container name must be unique`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return m[2], []string{"container_name"}, fmt.Sprintf("sets container_name and runs more than one replica (%s), but a container name is unique; remove container_name or run one replica", m[1])
		}},
	{regexp.MustCompile(`^services\.(.+)\.develop\.watch: target is required for non-rebuild actions`),
		func(cp *types.Project, m []string) (string, []string, string) {
			path := []string{"develop", "watch"}
			if d := cp.Services[m[1]].Develop; d != nil {
				for i, w := range d.Watch {
					if w.Target == "" && w.Action != types.WatchActionRebuild && w.Action != types.WatchActionRestart {
						path = append(path, strconv.Itoa(i))
						break
					}
				}
			}
			return m[1], path, "a develop.watch rule with action sync or sync+restart has no target; add target: (the path in the container to sync to)"
		}},
	{regexp.MustCompile(`^services\.(.+)\.(volumes|tmpfs)\[(\d+)\]: target (\S+) already mounted as services\.[^.]+\.(\S+)$`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return m[1], []string{m[2], m[3]}, fmt.Sprintf("mounts two things at %s (%s[%s] and %s); give each its own target", m[4], m[2], m[3], m[5])
		}},
	{regexp.MustCompile(`^"([^"]+)" is declared both as a service and a job`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return "", []string{"jobs", m[1]}, fmt.Sprintf("%q is declared both as a service and a job; rename one of them", m[1])
		}},
	{regexp.MustCompile(`^job "([^"]+)" depends on undefined service or job "([^"]+)"`),
		func(_ *types.Project, m []string) (string, []string, string) {
			return "", []string{"jobs", m[1], "depends_on", m[2]}, fmt.Sprintf("job %q depends on %q, which is neither a service nor a job; define it or remove it from depends_on", m[1], m[2])
		}},
	{regexp.MustCompile("^secret \"([^\"]+)\" must declare either `file` or `environment`"),
		func(_ *types.Project, m []string) (string, []string, string) {
			return "", []string{"secrets", m[1]}, fmt.Sprintf("secret %q has neither file: nor environment:; add one of them (or external: true)", m[1])
		}},
}

// consistencyError turns a compose-go consistency error into an *Error at
// the key's line; a message no rule knows keeps compose-go's words.
func (s *sources) consistencyError(cp *types.Project, err error) error {
	msg := strings.TrimSuffix(err.Error(), ": "+errdefs.ErrInvalid.Error())
	for _, r := range consistencyRules {
		m := r.re.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		service, path, what := r.where(cp, m)
		e := &Error{Service: service, Key: strings.Join(path, "."), Msg: what, Err: ErrInvalid}
		if service != "" {
			e.File, e.Line = s.locate(append([]string{"services", service}, path...)...)
		} else {
			e.File, e.Line = s.locate(path...)
		}
		return e
	}
	return &Error{File: s.display(s.primary()), Err: ErrInvalid,
		Msg: lowerFirst(msg) + "; Compose refuses this file too, so fix it as the message says"}
}

// refIndex is the index of the secret, config or build secret called
// source in the service's list, or -1.
func refIndex(s types.ServiceConfig, kind, source string) int {
	var refs []types.FileReferenceConfig
	switch kind {
	case "secret":
		for _, r := range s.Secrets {
			refs = append(refs, types.FileReferenceConfig(r))
		}
	case "config":
		for _, r := range s.Configs {
			refs = append(refs, types.FileReferenceConfig(r))
		}
	case "build secret":
		if s.Build != nil {
			for _, r := range s.Build.Secrets {
				refs = append(refs, types.FileReferenceConfig(r))
			}
		}
	}
	return slices.IndexFunc(refs, func(r types.FileReferenceConfig) bool { return r.Source == source })
}

// findService returns the first service, by name, that ok accepts.
func findService(cp *types.Project, ok func(types.ServiceConfig) bool) string {
	for _, name := range slices.Sorted(maps.Keys(cp.Services)) {
		if ok(cp.Services[name]) {
			return name
		}
	}
	return ""
}

func didYouMean(word string, candidates []string) string {
	slices.Sort(candidates)
	if c := closest(word, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

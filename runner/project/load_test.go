package project

import (
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// -update rewrites the want.txt goldens from the current output:
//
//	go test ./runner/project/ -run TestLoad -update
var update = flag.Bool("update", false, "rewrite testdata/load/*/want.txt")

// caseOptions is testdata/load/<case>/options.json: LoadOptions in JSON.
// WorkDir is always the case directory; Env defaults to empty (not the
// test process's environment) so goldens are hermetic.
type caseOptions struct {
	Files    []string `json:"files"`
	Name     string   `json:"name"`
	Profiles []string `json:"profiles"`
	EnvFiles []string `json:"env_files"`
	Services []string `json:"services"`
	Env      []string `json:"env"`
}

// TestLoad runs every case under testdata/load: the directory holds the
// project files, an optional options.json, and want.txt with either the
// JSON summary of the loaded project or "error <sentinel>\n<message>".
func TestLoad(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "load", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no cases in testdata/load")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			abs, err := filepath.Abs(dir)
			if err != nil {
				t.Fatal(err)
			}
			opts := LoadOptions{WorkDir: abs, Env: []string{}}
			if data, err := os.ReadFile(filepath.Join(dir, "options.json")); err == nil {
				var co caseOptions
				if err := json.Unmarshal(data, &co); err != nil {
					t.Fatalf("options.json: %v", err)
				}
				opts.Files, opts.Name, opts.Profiles = co.Files, co.Name, co.Profiles
				opts.EnvFiles, opts.Services = co.EnvFiles, co.Services
				if co.Env != nil {
					opts.Env = co.Env
				}
			}
			p, err := Load(t.Context(), opts)
			got := render(t, p, err)
			got = strings.ReplaceAll(got, abs, "$DIR")
			golden := filepath.Join(dir, "want.txt")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("mismatch (run with -update to accept)\n--- got\n%s\n--- want\n%s", got, want)
			}
		})
	}
}

// sentinels names the sentinel an error unwraps to, for the goldens.
var sentinels = map[string]error{
	"ErrNoFile": ErrNoFile, "ErrSyntax": ErrSyntax, "ErrUnknownKey": ErrUnknownKey,
	"ErrInvalid": ErrInvalid, "ErrCycle": ErrCycle, "ErrUnknownService": ErrUnknownService,
	"ErrMissingVariable": ErrMissingVariable, "ErrBadPort": ErrBadPort, "ErrNotRunnable": ErrNotRunnable,
}

func render(t *testing.T, p *Project, err error) string {
	t.Helper()
	if err != nil {
		name := "(none)"
		for _, n := range slices.Sorted(maps.Keys(sentinels)) {
			if errors.Is(err, sentinels[n]) {
				name = n
			}
		}
		var pe *Error
		if !errors.As(err, &pe) {
			name += " (not an *Error)"
		}
		return "error " + name + "\n" + err.Error() + "\n"
	}
	data, err := json.MarshalIndent(summarize(p), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(data) + "\n"
}

// summary is the stable, reviewable shape of a loaded project.
type summary struct {
	Name     string           `json:"name"`
	Files    []string         `json:"files"`
	X        ProjectExt       `json:"x"`
	Services []serviceSummary `json:"services"`
	Warnings []string         `json:"warnings,omitempty"`
}

type serviceSummary struct {
	Name        string             `json:"name"`
	Image       string             `json:"image,omitempty"`
	Command     []string           `json:"command,omitempty"`
	Environment map[string]*string `json:"environment,omitempty"`
	X           ServiceExt         `json:"x"`
	Ports       []Port             `json:"ports,omitempty"`
	DependsOn   []Dependency       `json:"depends_on,omitempty"`
	Healthcheck *healthSummary     `json:"healthcheck,omitempty"`
}

type healthSummary struct {
	Test          Command `json:"test"`
	Interval      string  `json:"interval"`
	Timeout       string  `json:"timeout"`
	Retries       int     `json:"retries"`
	StartPeriod   string  `json:"start_period"`
	StartInterval string  `json:"start_interval"`
}

func summarize(p *Project) summary {
	s := summary{Name: p.Name, X: p.X, Warnings: p.Warnings}
	for _, f := range p.Files {
		rel, err := filepath.Rel(p.Dir, f)
		if err != nil {
			rel = f
		}
		s.Files = append(s.Files, rel)
	}
	for _, svc := range p.Services {
		ss := serviceSummary{
			Name:        svc.Name,
			Image:       svc.Compose.Image,
			Command:     svc.Compose.Command,
			Environment: svc.Compose.Environment,
			X:           svc.X,
			Ports:       svc.Ports,
			DependsOn:   svc.DependsOn,
		}
		if h := svc.Healthcheck(); h != nil {
			ss.Healthcheck = &healthSummary{
				Test: h.Test, Interval: h.Interval.String(), Timeout: h.Timeout.String(), Retries: h.Retries,
				StartPeriod: h.StartPeriod.String(), StartInterval: h.StartInterval.String(),
			}
		}
		s.Services = append(s.Services, ss)
	}
	return s
}

func TestRender(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("testdata", "load", "xdevstack_run"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(t.Context(), LoadOptions{WorkDir: dir, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"yaml", "json"} {
		t.Run(format, func(t *testing.T) {
			out, err := p.Render(format)
			if err != nil {
				t.Fatal(err)
			}
			// The extensions must survive, as compose config prints them.
			for _, want := range []string{"x-devstack", "port_env", "go run ./cmd/api"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("%s output lacks %q:\n%s", format, want, out)
				}
			}
		})
	}
	if _, err := p.Render("toml"); err == nil {
		t.Error("Render(toml) succeeded, want an error")
	}
}

func TestServiceLookup(t *testing.T) {
	p := &Project{Services: []*Service{{Name: "a"}, {Name: "b"}}}
	if got := p.Service("b"); got == nil || got.Name != "b" {
		t.Errorf("Service(b) = %v", got)
	}
	if got := p.Service("c"); got != nil {
		t.Errorf("Service(c) = %v, want nil", got)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"full", &Error{File: "devstack.yaml", Line: 14, Service: "gateway", Msg: `x-devstack key "runn" is not allowed; did you mean "run"?`},
			`devstack.yaml:14: service "gateway": x-devstack key "runn" is not allowed; did you mean "run"?`},
		{"no line", &Error{File: "devstack.yaml", Msg: "boom"}, "devstack.yaml: boom"},
		{"service named in msg", &Error{File: "a.yaml", Line: 2, Service: "x", Msg: `service "x" has no way to run`},
			`a.yaml:2: service "x" has no way to run`},
		{"bare", &Error{Msg: "boom"}, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestClosest(t *testing.T) {
	tests := []struct {
		word string
		want string
	}{
		{"runn", "run"},
		{"imag", "image"},
		{"port-env", "port_env"},
		{"zzzzzzzz", ""},
	}
	keys := append(slices.Clone(serviceExtKeys), "image")
	for _, tt := range tests {
		t.Run(tt.word, func(t *testing.T) {
			if got := closest(tt.word, keys); got != tt.want {
				t.Errorf("closest(%q) = %q, want %q", tt.word, got, tt.want)
			}
		})
	}
}

func TestPortDeclared(t *testing.T) {
	for _, tc := range []struct {
		p    Port
		want uint16
	}{
		{Port{Published: 18080, Target: 8080}, 18080},
		{Port{Target: 8080}, 8080},
		{Port{Published: 8080, Target: 8080}, 8080},
	} {
		if got := tc.p.Declared(); got != tc.want {
			t.Errorf("%+v.Declared() = %d, want %d", tc.p, got, tc.want)
		}
	}
}

package project

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
)

// composeLoad loads files the way docker compose does: compose-go with its
// consistency check on.
func composeLoad(t *testing.T, dir string, opts LoadOptions) error {
	t.Helper()
	fns := []cli.ProjectOptionsFn{cli.WithEnv(opts.Env), cli.WithWorkingDirectory(dir), cli.WithName(opts.Name),
		cli.WithDefaultProfiles(opts.Profiles...), cli.WithConsistency(true)}
	if len(opts.EnvFiles) > 0 {
		fns = append(fns, cli.WithEnvFiles(absPaths(dir, opts.EnvFiles)...), cli.WithDotEnv)
	} else if isFile(filepath.Join(dir, ".env")) {
		fns = append(fns, cli.WithEnvFiles(filepath.Join(dir, ".env")), cli.WithDotEnv)
	}
	files := absPaths(dir, opts.Files)
	if len(files) == 0 {
		env := map[string]string{}
		for _, kv := range opts.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		var err error
		if files, err = discover(dir, env); err != nil {
			return err
		}
	}
	po, err := cli.NewProjectOptions(files, fns...)
	if err != nil {
		return err
	}
	cp, err := po.LoadProject(t.Context())
	if err == nil && len(opts.Services) > 0 {
		// as `docker compose up svc` does: a named service is enabled
		// even behind a profile
		if cp, err = cp.WithServicesEnabled(opts.Services...); err == nil {
			_, err = cp.WithSelectedServices(opts.Services)
		}
	}
	return err
}

// devstackOnly are the load cases devstack refuses for reasons of its own
// (x-devstack, port forms the proxy cannot serve) and compose accepts.
// Each must still be refused by devstack and accepted by compose, so the
// list cannot rot.
var devstackOnly = map[string]string{
	"err_ambassador":            "x-devstack",
	"err_external":              "x-devstack",
	"err_port_long":             "a published port above 65535 cannot be bound",
	"err_port_zero":             "port 0 cannot be proxied",
	"err_unknown_key_project_x": "x-devstack",
	"err_unknown_key_xdevstack": "x-devstack",
}

// TestComposeParity loads every load case and every compose-go loader
// fixture with compose-go (consistency on) and with Load, and wants the
// same answer: both accept or both refuse. A case whose services run as
// processes is loaded by compose-go with an image added to those
// services, the one rule devstack relaxes.
func TestComposeParity(t *testing.T) {
	type tcase struct{ name, dir string }
	var cases []tcase
	dirs, _ := filepath.Glob(filepath.Join("testdata", "load", "*"))
	for _, d := range dirs {
		cases = append(cases, tcase{filepath.Base(d), d})
	}
	for _, f := range composeFixtures(t) {
		cases = append(cases, tcase{"compose-go/" + filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f), f})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, opts := parityOptions(t, c.dir)
			_, derr := Load(t.Context(), opts)
			cerr := composeLoad(t, dir, opts)
			if cerr != nil && strings.Contains(cerr.Error(), "has neither an image nor a build context") {
				// The one rule devstack relaxes; the goldens cover what
				// devstack says about these files.
				t.Skip("process services: compose-go refuses them for having no image")
			}
			if why, ok := devstackOnly[c.name]; ok {
				if derr == nil || cerr != nil {
					t.Fatalf("listed as devstack-only (%s), but devstack: %v, compose: %v", why, derr, cerr)
				}
				return
			}
			if (derr == nil) != (cerr == nil) {
				t.Fatalf("devstack and compose disagree:\ndevstack: %v\ncompose:  %v", derr, cerr)
			}
		})
	}
}

// parityOptions turns a case directory (or a compose-go fixture file) into
// the directory and options both loaders get.
func parityOptions(t *testing.T, path string) (string, LoadOptions) {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(abs, ".yaml") || strings.HasSuffix(abs, ".yml") {
		dir := filepath.Dir(abs)
		return dir, LoadOptions{WorkDir: dir, Files: []string{abs}, Env: []string{}}
	}
	opts := LoadOptions{WorkDir: abs, Env: []string{}}
	if data, err := os.ReadFile(filepath.Join(abs, "options.json")); err == nil {
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
	return abs, opts
}

// composeFixtures lists compose-go's own loader fixtures (the module's
// loader/testdata): the top-level files, the goldens' inputs and the
// extends and include cases.
func composeFixtures(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/compose-spec/compose-go/v2").Output()
	if err != nil {
		t.Fatalf("finding compose-go's module: %v", err)
	}
	root := filepath.Join(strings.TrimSpace(string(out)), "loader", "testdata")
	var files []string
	for _, pattern := range []string{"*.yaml", "golden/*.yaml", "extends/*.yaml", "include/*.yaml", "combined/*.yaml"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("found only %d compose-go fixtures under %s", len(files), root)
	}
	return files
}

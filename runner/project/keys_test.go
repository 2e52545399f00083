package project

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestServiceKeys(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  web:
    image: nginx
    build:
      context: .
      args: {A: "1"}
    deploy:
      replicas: 2
      resources:
        limits: {memory: 64M}
    env_file: [web.env]
    volumes: [./data:/data]
    ulimits: {nofile: 1024}
    x-devstack: {protocol: http}
`
	for name, data := range map[string]string{"devstack.yaml": yaml, "web.env": "A=1\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Load(t.Context(), LoadOptions{WorkDir: dir, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	got := p.Service("web").Keys()
	want := []string{"build.args", "build.context", "build.dockerfile", "deploy.replicas", "deploy.resources", "environment", "image", "ulimits", "volumes"}
	if !slices.Equal(got, want) {
		t.Errorf("Keys() = %q\nwant     %q", got, want)
	}
}

// Without -f, the project is found in the directory or its nearest parent
// holding a project file, as compose finds it; with none, ErrNoFile.
func TestLoadFindsTheFileInAParentDirectory(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "svc", "deep")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(t.Context(), LoadOptions{WorkDir: sub, Env: []string{}}); !errors.Is(err, ErrNoFile) {
		t.Fatalf("with no file anywhere: %v, want ErrNoFile", err)
	}
	yaml := "services:\n  web:\n    image: nginx\n    env_file: [web.env]\n"
	for name, data := range map[string]string{"compose.yaml": yaml, "web.env": "A=1\n", ".env": "X=from-dotenv\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Load(t.Context(), LoadOptions{WorkDir: sub, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Dir != root || p.Name != filepath.Base(root) {
		t.Errorf("loaded from a subdirectory: dir %s, name %s; want %s, %s", p.Dir, p.Name, root, filepath.Base(root))
	}
	if v := p.Service("web").Compose.Environment["A"]; v == nil || *v != "1" {
		t.Errorf("env_file relative to the project directory was not read: A=%v", v)
	}
	files, err := FilesFor(sub, nil)
	if err != nil || len(files) != 1 || files[0] != filepath.Join(root, "compose.yaml") {
		t.Errorf("FilesFor(subdir) = %v, %v", files, err)
	}
}

package project

import (
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

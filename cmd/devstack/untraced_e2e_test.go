package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The hops devstack cannot trace are named, with their fix, in up and in
// ps: a process service without port_env (nothing to front), and a
// container service that listens on 127.0.0.1 inside its container (its
// own healthcheck passes; nothing outside reaches it).
func TestDockerUntracedHopsAreNamedWithTheirFix(t *testing.T) {
	d := requireEngine(t)
	shop := filepath.Join(repoRoot(t), "examples", "shop")
	fraud, worker := freeLoopbackPort(t), freeLoopbackPort(t)
	yaml := fmt.Sprintf(`x-devstack:
  workdir: %[1]s
services:
  build:
    x-devstack: {run: CGO_ENABLED=0 go build -o bin/shop ./cmd/shop, backend: process}
  fraud:
    image: devstack-shop:dev
    build: {context: %[1]s}
    x-devstack: {backend: docker, port_env: PORT}
    command: [serve, fraud]
    environment: {LISTEN_HOST: 127.0.0.1}
    ports: ["127.0.0.1:%[2]d:%[2]d"]
    healthcheck:
      test: ["CMD", "bin/shop", "probe"]
      interval: 1s
      start_period: 10s
      start_interval: 100ms
    depends_on: {build: {condition: service_completed_successfully}}
  worker:
    x-devstack: {run: "sleep 300", backend: process}
    ports: ["127.0.0.1:%[3]d:%[3]d"]
`, shop, fraud, worker)
	p := newDockerProject(t, writeProject(t, yaml), projectName("untraced"), d)
	up := p.must("up", "-d")
	if out := up.stdout + up.stderr; !strings.Contains(out, "calls to worker are not traced") || !strings.Contains(out, "add port_env: PORT") {
		t.Errorf("up does not say that worker is not traced, and the fix:\n%s", out)
	}
	var fraudWarn, workerWarn []string
	for deadline := time.Now().Add(30 * time.Second); len(fraudWarn) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, ps says nothing of fraud listening on 127.0.0.1 inside its container; warnings %q", fraudWarn)
		}
		st := p.ps()
		fraudWarn, workerWarn = st["fraud"].Warnings, st["worker"].Warnings
		if h := st["fraud"].Health; h != "healthy" {
			fraudWarn = nil // not checked before it is healthy
		}
	}
	if len(fraudWarn) != 1 || !strings.Contains(fraudWarn[0], "127.0.0.1 inside its container") || !strings.Contains(fraudWarn[0], "listen on 0.0.0.0") {
		t.Errorf("fraud's warnings %q; want that it listens on 127.0.0.1 in its container, and the fix", fraudWarn)
	}
	if len(workerWarn) != 1 || !strings.Contains(workerWarn[0], "port_env") {
		t.Errorf("worker's warnings %q; want that it is not traced without port_env", workerWarn)
	}
	p.must("down")
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Benchmarks of the whole CLI, on the real binary (built without -race):
//
//	go test -run '^$' -bench UpDown -benchtime 3x ./cmd/devstack
//
// Each reports up_ms (up -d until every service is healthy), down_ms, and
// for the generated stack the supervisor's RSS. The baseline runs the same
// processes and health probes with a plain shell script, side by side.

var (
	benchBinOnce sync.Once
	benchBin     string
	benchBinErr  error
)

func benchBinary(b *testing.B) string {
	benchBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "devstack-bench")
		if err != nil {
			benchBinErr = err
			return
		}
		benchBin = filepath.Join(dir, "devstack")
		out, err := exec.Command("go", "build", "-o", benchBin, ".").CombinedOutput()
		if err != nil {
			benchBinErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if benchBinErr != nil {
		b.Fatal(benchBinErr)
	}
	return benchBin
}

// genStack writes n services in layers of 5: each layer waits for the
// previous one to be healthy.
func genStack(b *testing.B, n int) string {
	var sb strings.Builder
	sb.WriteString("name: gen\nservices:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  s%02d:\n    x-devstack: {run: \"exec sleep 300\"}\n", i)
		sb.WriteString("    healthcheck: {test: [\"CMD\", \"true\"], interval: 1h, start_period: 1m, start_interval: 100ms}\n")
		if i >= 5 {
			fmt.Fprintf(&sb, "    depends_on: {s%02d: {condition: service_healthy}}\n", i-5)
		}
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return dir
}

func BenchmarkUpDown(b *testing.B) {
	bin := benchBinary(b)
	wd, _ := os.Getwd()
	stacks := []struct {
		name string
		dir  string
	}{
		{"shop", filepath.Join(wd, "..", "..")},
		{"gen50", genStack(b, 50)},
	}
	for _, st := range stacks {
		b.Run(st.name, func(b *testing.B) {
			state := b.TempDir()
			run := func(args ...string) {
				cmd := exec.Command(bin, args...)
				cmd.Dir = st.dir
				cmd.Env = append(os.Environ(), "DEVSTACK_STATE_DIR="+state)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("devstack %v: %v\n%s", args, err, out)
				}
			}
			var up, down time.Duration
			var rss int
			for b.Loop() {
				t0 := time.Now()
				run("up", "-d")
				up += time.Since(t0)
				rss = max(rss, supervisorRSS(state))
				t1 := time.Now()
				run("down")
				down += time.Since(t1)
			}
			b.ReportMetric(float64(up.Milliseconds())/float64(b.N), "up_ms")
			b.ReportMetric(float64(down.Milliseconds())/float64(b.N), "down_ms")
			b.ReportMetric(float64(rss), "supervisor_rss_kB")
		})
	}
	// Baseline: the same 50 processes and probes from a shell, layer by
	// layer, with the same 100ms probe pace, then killed.
	b.Run("gen50-shell-baseline", func(b *testing.B) {
		script := `set -e
pids=""
for layer in 0 1 2 3 4 5 6 7 8 9; do
  for i in 1 2 3 4 5; do sleep 300 & pids="$pids $!"; done
  sleep 0.1; true   # one probe interval, as the healthcheck's first start_interval
done
kill $pids; wait 2>/dev/null || true`
		for b.Loop() {
			if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}

// supervisorRSS reads VmRSS (kB) of the one supervisor recorded in state.
func supervisorRSS(state string) int {
	matches, _ := filepath.Glob(filepath.Join(state, "*", "state.json"))
	for _, m := range matches {
		b, _ := os.ReadFile(m)
		i := strings.Index(string(b), `"pid": `)
		if i < 0 {
			continue
		}
		rest := string(b[i+7:])
		pid, _ := strconv.Atoi(rest[:strings.IndexAny(rest, ",\n")])
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
	}
	return 0
}

// Command reload measures hot reload on the example shop: the time from a
// source file's write to the new payments answering through the proxy
// (minus the build's own time), and, under a bounded load loop at full
// speed through the gateway, the failed requests and the p99 latency
// during consecutive reloads against the same time without.
//
//	go run ./bench/reload -devstack ./devstack -shop examples/shop -n 20 -c 8
//
// It runs `devstack -f devstack.yaml -f devstack.watch.yaml up -d
// --watch` in the shop's directory (with a temporary state directory) (payments is
// rebuilt when ./internal changes), and for each reload writes
// internal/service/zz_reloadbench.go (removed at the end). A reload is done when
// payments' log says "reloaded in" (devstack writes it once the new
// instance passed its healthcheck and the proxy switched to it); the
// line also carries the build's time, which is subtracted. -backend
// docker measures the container path, and beside it the engine's floor
// (floor.go): the same container created, started and healthy, with no
// watch, build or proxy.
//
// bench/reload.sh builds devstack from the tree and runs this.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	devstack := flag.String("devstack", "./devstack", "the devstack binary")
	shop := flag.String("shop", "examples/shop", "the example shop's directory")
	n := flag.Int("n", 20, "reloads to measure")
	conns := flag.Int("c", 8, "load loop connections (0: no load phase)")
	backend := flag.String("backend", "process", "process or docker")
	flag.Parse()
	if err := run(*devstack, *shop, *n, *conns, *backend); err != nil {
		fmt.Fprintln(os.Stderr, "bench/reload:", err)
		os.Exit(1)
	}
}

func run(devstack, shop string, n, conns int, backend string) error {
	devstack, _ = filepath.Abs(devstack)
	work, err := os.MkdirTemp("", "devstack-reloadbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// In place: the shop is part of devstack's module, so a copy elsewhere
	// would not build. Only the mark file is added, and removed at the end.
	dir, err := filepath.Abs(shop)
	if err != nil {
		return err
	}
	env := append(os.Environ(), "DEVSTACK_STATE_DIR="+filepath.Join(work, "state"))
	ds := func(args ...string) *exec.Cmd {
		c := exec.Command(devstack, append([]string{"-f", "devstack.yaml", "-f", "devstack.watch.yaml"}, args...)...)
		c.Dir, c.Env = dir, env
		return c
	}
	up := []string{"up", "-d", "--watch"}
	if backend != "process" {
		up = append(up, "--backend", backend)
	}
	// down whatever up did: a stack that failed to come up keeps its
	// supervisor. On docker, each rebuild leaves the image it replaced
	// untagged: those go too.
	if backend == "docker" {
		before := danglingShopImages()
		defer func() {
			for _, id := range danglingShopImages() {
				if !slices.Contains(before, id) {
					_ = exec.Command("docker", "rmi", id).Run()
				}
			}
		}()
	}
	defer ds("down").Run()
	if out, err := ds(up...).CombinedOutput(); err != nil {
		return fmt.Errorf("devstack up: %v\n%s", err, out)
	}

	logs := ds("logs", "-f", "--no-color", "--tail", "all", "payments")
	lr, err := logs.StdoutPipe()
	if err != nil {
		return err
	}
	if err := logs.Start(); err != nil {
		return err
	}
	defer logs.Process.Kill()
	reloaded := make(chan reloadLine, 4)
	standby := make(chan bool, 64)
	go scanReloads(lr, reloaded, standby)

	mark := filepath.Join(dir, "internal", "service", "zz_reloadbench.go")
	defer os.Remove(mark)
	reload := func(i int) (reloadLine, time.Duration, error) {
		t0 := time.Now()
		if err := os.WriteFile(mark, []byte(fmt.Sprintf("package service\n\nconst reloadBench = %d\n", i)), 0o644); err != nil {
			return reloadLine{}, 0, err
		}
		select {
		case l := <-reloaded:
			if l.failed != "" {
				return l, 0, fmt.Errorf("reload %d failed: %s", i, l.failed)
			}
			return l, time.Since(t0), nil
		case <-time.After(5 * time.Minute):
			return reloadLine{}, 0, fmt.Errorf("reload %d: no \"reloaded in\" line within 5 minutes of the write", i)
		}
	}

	// Latency: reloads one at a time, the stack otherwise idle (on docker,
	// the next once the replaced container is gone).
	var ext, internal, whole, builds []time.Duration
	standbys := 0
	if backend == "docker" {
		// up --watch readies payments' first standby; its log line is
		// in the log followed from its start. Each reload then readies
		// one more (or says why not).
		select {
		case <-standby:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no word of payments' standby 30s after up --watch")
		}
	}
	for i := 1; i <= n; i++ {
		l, took, err := reload(i)
		if err != nil {
			return err
		}
		if backend == "docker" {
			if err := settled(context.Background()); err != nil {
				return err
			}
			// A standby for the next reload (if payments can have one) is
			// made after this one: wait for it, as a user who saves every
			// few seconds would find it ready.
			select {
			case ok := <-standby:
				if !ok {
					fmt.Fprintf(os.Stderr, "reload %d: no standby for the next reload (see devstack logs payments)\n", i)
				}
			case <-time.After(30 * time.Second):
				return fmt.Errorf("reload %d: no word of a standby within 30s", i)
			}
		}
		if l.standby {
			standbys++
		}
		ext = append(ext, took-l.build)
		internal = append(internal, l.took-l.build)
		whole, builds = append(whole, took), append(builds, l.build)
	}
	fmt.Printf("reload latency (%s, %d reloads), write → new payments answering, minus build:\n", backend, n)
	fmt.Printf("  seen from outside (write → log line): p50 %s  p95 %s\n", pct(ext, 50), pct(ext, 95))
	fmt.Printf("  devstack's own measure (change seen → switched): p50 %s  p95 %s\n", pct(internal, 50), pct(internal, 95))
	fmt.Printf("  the build itself (x-devstack.build, and the image on docker): p50 %s  p95 %s\n", pct(builds, 50), pct(builds, 95))
	fmt.Printf("  write → new payments answering, build included: p50 %s  p95 %s\n", pct(whole, 50), pct(whole, 95))
	if backend == "docker" {
		fmt.Printf("  reloads a standby container took over: %d of %d\n", standbys, n)
		floor, err := engineFloor(context.Background(), "shop-payments-1", n)
		if err != nil {
			return fmt.Errorf("engine floor: %w", err)
		}
		fmt.Printf("  engine floor (a container like payments created, started and its healthcheck passed, through the API): p50 %s  p95 %s\n", pct(floor, 50), pct(floor, 95))
	}
	if conns == 0 {
		return nil
	}

	// Under load: the same time without reloads, then n reloads.
	url := "http://127.0.0.1:18080/checkout?item=sku-1&qty=1"
	base := load(url, conns, func() { time.Sleep(5 * time.Second) })
	during := load(url, conns, func() {
		for i := n + 1; i <= 2*n; i++ {
			if _, _, err := reload(i); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return
			}
		}
	})
	fmt.Printf("under load (%d connections to the gateway's /checkout):\n", conns)
	fmt.Printf("  without reloads: %d requests, %d failed, p50 %s p99 %s\n", len(base.lat), base.failed, pct(base.lat, 50), pct(base.lat, 99))
	fmt.Printf("  during %d reloads: %d requests, %d failed, p50 %s p99 %s\n", n, len(during.lat), during.failed, pct(during.lat, 50), pct(during.lat, 99))
	if during.failed > 0 {
		fmt.Printf("  first failure: %s\n", during.firstErr)
	}
	return nil
}

type reloadLine struct {
	took, build time.Duration
	failed      string // the log line of a reload that failed
	standby     bool   // a standby container took it over
}

var failedRe = regexp.MustCompile(`reload of "[^"]*" failed`)

var reloadRe = regexp.MustCompile(`reloaded in ([0-9.]+[µa-z]+)(?:, build ([0-9.]+[µa-z]+))?`)

// scanReloads sends each "reloaded in" line's times, and each failed
// reload's line.
//
// On docker it also tells standby whether a standby container is ready
// for the next reload (true) or the next reload starts a new container
// (false).
func scanReloads(r io.Reader, out chan<- reloadLine, standby chan<- bool) {
	sc := bufio.NewScanner(r)
	tookOver := false
	var recent []string // since the last reload, for one no standby took over
	for sc.Scan() {
		t := sc.Text()
		if !strings.Contains(t, "msg=request") {
			recent = append(recent, t)
		}
		if failedRe.MatchString(t) {
			out <- reloadLine{failed: t}
			continue
		}
		switch {
		case strings.Contains(t, "is ready for the next reload"):
			standby <- true
			continue
		case strings.Contains(t, "the next reload starts a new instance"):
			standby <- false
			continue
		case strings.Contains(t, "started the new code in standby container"):
			tookOver = true
			continue
		case strings.Contains(t, "starting a new container: "):
			fmt.Fprintln(os.Stderr, "no standby for a reload:", t)
			continue
		}
		m := reloadRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		l := reloadLine{standby: tookOver}
		// RELOADBENCH_DEBUG=1 shows the log of each docker reload that
		// no standby took over, to tell why.
		if !tookOver && os.Getenv("RELOADBENCH_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "a reload no standby took over:\n  %s\n", strings.Join(recent, "\n  "))
		}
		tookOver, recent = false, nil
		l.took, _ = time.ParseDuration(m[1])
		if m[2] != "" {
			l.build, _ = time.ParseDuration(m[2])
		}
		out <- l
	}
}

type loadResult struct {
	lat      []time.Duration
	failed   int64
	firstErr string
}

// load runs a load loop at full speed on conns connections while during
// runs, bounded by 10 minutes.
func load(url string, conns int, during func()) loadResult {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var (
		mu     sync.Mutex
		res    loadResult
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			var lat []time.Duration
			for ctx.Err() == nil {
				t := time.Now()
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					if failed.Add(1) == 1 {
						mu.Lock()
						res.firstErr = err.Error()
						mu.Unlock()
					}
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	during()
	cancel()
	wg.Wait()
	res.failed = failed.Load()
	return res
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(time.Microsecond * 10)
}

// danglingShopImages lists the untagged images of the shop project.
func danglingShopImages() []string {
	out, err := exec.Command("docker", "image", "ls", "-q", "--no-trunc", "-f", "dangling=true", "-f", "label=dev.devstack.project=shop").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

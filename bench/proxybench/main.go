// Command proxybench measures a hop through devstack's proxy against a
// direct connection, nginx, a minimal httputil.ReverseProxy and two byte
// relays written in Go that do less than any proxy can (floor.go), all in
// front of the same upstream, side by side in one run. It prints latency
// (sequential p50/p99) and wrk throughput at 1 and 32 connections, for
// 64 B and 16 KiB bodies, with ratios.
//
//	bench/proxy.sh            (installs wrk and nginx if missing, then runs this)
//	go run ./bench/proxybench -duration 5s
//
// Everything listens on 127.0.0.1; every load run is bounded by -duration.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/devstack/devstack/proxy/propagate"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

type target struct {
	name string
	addr string
}

func run() error {
	duration := flag.Duration("duration", 3*time.Second, "wrk duration per run")
	seq := flag.Int("n", 3000, "sequential requests for the latency percentiles")
	only := flag.String("only", "", "run only this target (direct, devstack, devstack-goroutines, nginx, httputil, relay-goroutines, relay-epoll)")
	serve := flag.String("serve-upstream", "", "internal: be the upstream server on this address")
	floor := flag.String("serve-floor", "", "internal: be this floor relay (relay-goroutines, relay-epoll) from -listen to -to")
	floorListen := flag.String("listen", "", "internal: the floor relay's or proxy's address")
	floorTo := flag.String("to", "", "internal: the floor relay's or proxy's upstream")
	norec := flag.Bool("no-record", false, "devstack without recording (to measure what recording costs)")
	rounds := flag.Int("rounds", 3, "measure every target this many times, interleaved; report medians")
	pairs := flag.Int("pairs", 12, "then run devstack and both nginx at 32 and at 1 connection back to back this many times per body size, and report the median of the ratios")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of devstack's proxy process to the file")
	memprofile := flag.String("memprofile", "", "write an allocation profile of devstack's proxy process to the file as it exits")
	serveProxyKind := flag.String("serve-proxy", "", "internal: be this proxy (devstack, devstack-goroutines, httputil) from -listen to -to")
	storeDir := flag.String("store", "", "internal: the span store's directory for -serve-proxy")
	flag.Parse()
	if *serve != "" {
		return serveUpstream(*serve)
	}
	if *floor != "" {
		return serveFloor(*floor, *floorListen, *floorTo)
	}
	if *serveProxyKind != "" {
		return serveProxy(*serveProxyKind, *floorListen, *floorTo, *storeDir, *norec, profiles{*cpuprofile, *memprofile})
	}
	tmp, err := os.MkdirTemp("", "proxybench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The upstream and every proxy are processes of their own, as nginx
	// is, so that each proxy shares a process with nothing but itself.
	upAddr := freeAddr()
	_, stopUp, err := startSelf(upAddr, "-serve-upstream", upAddr)
	if err != nil {
		return err
	}
	defer stopUp()
	proxyPids := map[string]int{}
	proxyAddrs := map[string]string{}
	for _, kind := range []string{"devstack", "devstack-goroutines", "httputil"} {
		if *only != "" && kind != *only {
			continue
		}
		addr := freeAddr()
		args := []string{"-serve-proxy", kind, "-listen", addr, "-to", upAddr, "-store", filepath.Join(tmp, kind)}
		if *norec {
			args = append(args, "-no-record")
		}
		if kind == "devstack" && *cpuprofile != "" {
			args = append(args, "-cpuprofile", *cpuprofile)
		}
		if kind == "devstack" && *memprofile != "" {
			args = append(args, "-memprofile", *memprofile)
		}
		pid, stop, err := startSelf(addr, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		defer stop()
		proxyPids[kind], proxyAddrs[kind] = pid, addr
	}
	dsAddr := proxyAddrs["devstack"]

	nginxAddr, nginxPid, stopNginx, err := startNginx(filepath.Join(tmp, "nginx"), upAddr, false)
	if err != nil {
		return err
	}
	defer stopNginx()
	// nginx made to send the upstream the same trace headers devstack
	// stamps (fixed values, as it cannot make ids): what parsing them
	// costs the upstream, on the same cores, is then in both.
	stampAddr, stampPid, stopStamp, err := startNginx(filepath.Join(tmp, "nginx-stamping"), upAddr, true)
	if err != nil {
		return err
	}
	defer stopStamp()
	floors := map[string]target{}
	floorPids := map[string]int{}
	for _, kind := range []string{"relay-goroutines", "relay-epoll"} {
		addr := freeAddr()
		pid, stop, err := startSelf(addr, "-serve-floor", kind, "-listen", addr, "-to", upAddr)
		if err != nil {
			return err
		}
		defer stop()
		floors[kind] = target{kind, addr}
		floorPids[kind] = pid
	}
	// cpuOf reads the CPU time a target's proxy has used so far: its
	// process, or nginx's workers for nginx.
	cpuOf := map[string]func() time.Duration{
		"direct":         func() time.Duration { return 0 },
		"nginx":          func() time.Duration { return childrenCPU(nginxPid) },
		"nginx-stamping": func() time.Duration { return childrenCPU(stampPid) },
	}
	for kind, pid := range floorPids {
		cpuOf[kind] = func() time.Duration { return procCPU(pid) }
	}
	for kind, pid := range proxyPids {
		cpuOf[kind] = func() time.Duration { return procCPU(pid) }
	}

	targets := []target{{"direct", upAddr}, {"devstack", dsAddr}, {"devstack-goroutines", proxyAddrs["devstack-goroutines"]}, {"nginx", nginxAddr}, {"nginx-stamping", stampAddr}, {"httputil", proxyAddrs["httputil"]},
		floors["relay-goroutines"], floors["relay-epoll"]}
	if *only != "" {
		targets = slices.DeleteFunc(targets, func(t target) bool {
			return t.name != *only && t.name != "direct" && !strings.HasPrefix(t.name, "nginx")
		})
	}
	// Targets are measured in rounds, interleaved, and each figure is the
	// median over the rounds: a burst of load from elsewhere on the
	// machine then hurts one sample of every target, not all of one.
	type result struct{ p50, p99, rps1, rps32, cpu float64 }
	samples := map[string]map[string][]result{}
	for round := range *rounds {
		for _, path := range []string{"/64", "/16k"} {
			for _, t := range targets {
				url := "http://" + t.addr + path
				p50, p99, err := latency(url, *seq)
				if err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				r1, err := wrk(url, 1, *duration)
				if err != nil {
					return err
				}
				cpu0 := cpuOf[t.name]()
				r32, err := wrk(url, 32, *duration)
				if err != nil {
					return err
				}
				// CPU per request at c32: the proxy's cost, which is what
				// decides throughput on a machine whose cores are shared
				// with the load generator and the upstream.
				cpu := float64((cpuOf[t.name]() - cpu0).Microseconds()) / (r32 * float64(int(duration.Seconds())))
				if samples[path] == nil {
					samples[path] = map[string][]result{}
				}
				samples[path][t.name] = append(samples[path][t.name], result{p50, p99, r1, r32, cpu})
				fmt.Fprintf(os.Stderr, "round %d %-5s %-9s p50 %7.1fµs p99 %7.1fµs  wrk c1 %8.0f/s c32 %8.0f/s  cpu %5.1fµs/req\n", round+1, path, t.name, p50, p99, r1, r32, cpu)
			}
		}
	}
	res := map[string]map[string]result{}
	for path, byTarget := range samples {
		res[path] = map[string]result{}
		for name, rs := range byTarget {
			med := func(f func(result) float64) float64 {
				v := make([]float64, len(rs))
				for i, r := range rs {
					v[i] = f(r)
				}
				slices.Sort(v)
				return v[len(v)/2]
			}
			res[path][name] = result{med(func(r result) float64 { return r.p50 }), med(func(r result) float64 { return r.p99 }),
				med(func(r result) float64 { return r.rps1 }), med(func(r result) float64 { return r.rps32 }),
				med(func(r result) float64 { return r.cpu })}
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "body\ttarget\tp50 µs\tp99 µs\tadded p50 µs\trps c1\trps c32\tc1 vs nginx\tc32 vs nginx\tproxy CPU µs/req c32")
	for _, path := range []string{"/64", "/16k"} {
		d, n := res[path]["direct"], res[path]["nginx"]
		for _, t := range targets {
			r := res[path][t.name]
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.2fx\t%.2fx\t%.1f\n", path, t.name, r.p50, r.p99, r.p50-d.p50,
				r.rps1, r.rps32, r.rps1/n.rps1, r.rps32/n.rps32, r.cpu)
		}
	}
	tw.Flush()
	fmt.Println()
	for _, path := range []string{"/64", "/16k"} {
		d, n := res[path]["direct"], res[path]["nginx"]
		if x, ok := res[path]["devstack"]; ok {
			fmt.Printf("%s: devstack throughput %.2fx nginx at c1, %.2fx at c32 (target ≥ 0.9x); added p50 %.1fµs vs nginx's %.1fµs (target ≤ nginx + 25µs)\n",
				path, x.rps1/n.rps1, x.rps32/n.rps32, x.p50-d.p50, n.p50-d.p50)
			ns := res[path]["nginx-stamping"]
			fmt.Printf("%s: devstack throughput %.2fx nginx-stamping (nginx sending the same trace headers) at c1, %.2fx at c32\n",
				path, x.rps1/ns.rps1, x.rps32/ns.rps32)
		}
		for _, kind := range []string{"relay-goroutines", "relay-epoll"} {
			if f, ok := res[path][kind]; ok {
				fmt.Printf("%s: floor %s (bytes relayed, no HTTP work): %.2fx nginx at c1, %.2fx at c32\n", path, kind, f.rps1/n.rps1, f.rps32/n.rps32)
			}
		}
	}
	// Paired runs: a target's rounds above are tens of seconds apart, and
	// this machine's speed drifts over that (the same code's CPU per
	// request varies by a third between runs). Running devstack and both
	// nginx back to back, in every order in turn, and taking each run's ratios
	// cancels the drift that all see.
	if *pairs > 0 && slices.ContainsFunc(targets, func(t target) bool { return t.name == "devstack" }) {
		for _, path := range []string{"/64", "/16k"} {
			p50, err := interleavedP50([3]string{"http://" + upAddr + path, "http://" + dsAddr + path, "http://" + nginxAddr + path}, *seq*2, *pairs)
			if err != nil {
				return err
			}
			fmt.Printf("%s: latency in %d interleaved blocks: devstack added p50 %.1fµs vs nginx's %.1fµs (target ≤ nginx + 25µs)\n",
				path, *pairs, p50[1]-p50[0], p50[2]-p50[0])
		}
		for _, run := range []struct {
			path  string
			conns int
		}{{"/64", 32}, {"/16k", 32}, {"/64", 1}, {"/16k", 1}} {
			path := run.path
			var plain, stamping []float64
			for i := range *pairs {
				// Every order of the three in turn (see orders3).
				three := []string{dsAddr, nginxAddr, stampAddr}
				var order []string
				for _, k := range orders3[i%len(orders3)] {
					order = append(order, three[k])
				}
				rps := map[string]float64{}
				for _, addr := range order {
					r, err := wrk("http://"+addr+path, run.conns, 2*time.Second)
					if err != nil {
						return err
					}
					rps[addr] = r
				}
				plain = append(plain, rps[dsAddr]/rps[nginxAddr])
				stamping = append(stamping, rps[dsAddr]/rps[stampAddr])
				fmt.Fprintf(os.Stderr, "pair %d %-5s c%-2d devstack %8.0f/s nginx %8.0f/s nginx-stamping %8.0f/s  ratios %.2f %.2f\n",
					i+1, path, run.conns, rps[dsAddr], rps[nginxAddr], rps[stampAddr], plain[i], stamping[i])
			}
			for _, r := range []struct {
				vs     string
				ratios []float64
			}{{"nginx", plain}, {"nginx-stamping", stamping}} {
				slices.Sort(r.ratios)
				fmt.Printf("%s: c%d in %d back-to-back runs: devstack/%s median %.2fx (range %.2f–%.2f)\n",
					path, run.conns, len(r.ratios), r.vs, r.ratios[len(r.ratios)/2], r.ratios[0], r.ratios[len(r.ratios)-1])
			}
		}
	}
	// What the stamped headers alone cost: the upstream hit directly, with
	// and without them, back to back. The upstream is a Go net/http server
	// on the same cores as the proxy and wrk, so what it spends parsing
	// them is throughput that no proxy stamping them can have.
	if *pairs > 0 {
		stamped := stampedHeaders()
		for _, path := range []string{"/64", "/16k"} {
			var ratios []float64
			for i := range *pairs {
				var plain, with float64
				for j := range 2 {
					var err error
					if (i+j)%2 == 0 {
						plain, err = wrk("http://"+upAddr+path, 32, 2*time.Second)
					} else {
						with, err = wrk("http://"+upAddr+path, 32, 2*time.Second, stamped...)
					}
					if err != nil {
						return err
					}
				}
				ratios = append(ratios, with/plain)
			}
			slices.Sort(ratios)
			fmt.Printf("%s: c32 in %d back-to-back runs: the upstream hit directly serves %.2fx with the %d headers devstack stamps as without them (range %.2f–%.2f)\n",
				path, len(ratios), ratios[len(ratios)/2], len(stamped), ratios[0], ratios[len(ratios)-1])
		}
	}
	return nil // the stops deferred above print what devstack's stores recorded
}

// startSelf runs this program with args in a process of its own and
// waits until it listens on addr. stop ends it.
func startSelf(addr string, args ...string) (pid int, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	// SIGTERM first: devstack's proxies close their span stores and say
	// what they recorded.
	stop = func() { terminate(cmd, 10*time.Second, func() { cmd.Process.Kill() }) }
	if err := waitListening(addr); err != nil {
		stop()
		return 0, nil, err
	}
	return cmd.Process.Pid, stop, nil
}

// terminate sends cmd SIGTERM and waits for it to exit, calling kill if
// it has not after grace.
func terminate(cmd *exec.Cmd, grace time.Duration, kill func()) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		kill()
		<-done
	}
}

func listen() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return l
}

func freeAddr() string {
	l := listen()
	defer l.Close()
	return l.Addr().String()
}

// latency sends n sequential requests on one keep-alive connection and
// returns p50 and p99 in microseconds.
func latency(url string, n int) (float64, float64, error) {
	c := latencyClient()
	if _, err := latencySamples(c, url, 100, nil); err != nil { // warm-up
		return 0, 0, err
	}
	ds, err := latencySamples(c, url, n, nil)
	if err != nil {
		return 0, 0, err
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*99/100], nil
}

// latencyClient keeps one connection open, as a sequential client does.
func latencyClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
}

// latencySamples appends to ds the microseconds each of n sequential
// requests took.
func latencySamples(c *http.Client, url string, n int, ds []float64) ([]float64, error) {
	for range n {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return ds, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ds = append(ds, float64(time.Since(t0).Nanoseconds())/1e3)
	}
	return ds, nil
}

// orders3 is every order of three targets. Taken in turn, each target
// runs first, last and right after each other one equally often, so that
// what a run leaves behind (a collection finishing, the span store
// catching up) weighs on all alike.
var orders3 = [][3]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}, {2, 0, 1}, {1, 0, 2}}

// interleavedP50 measures the latency of each of three urls in blocks of
// n/blocks requests, taking the urls in every order in turn (orders3), as
// the throughput runs do, and returns each one's median: drift over the
// run then weighs on all of them alike.
func interleavedP50(urls [3]string, n, blocks int) ([]float64, error) {
	clients := make([]*http.Client, len(urls))
	samples := make([][]float64, len(urls))
	for i, u := range urls {
		clients[i] = latencyClient()
		if _, err := latencySamples(clients[i], u, 100, nil); err != nil { // warm-up
			return nil, err
		}
	}
	for b := range blocks {
		for _, i := range orders3[b%len(orders3)] {
			var err error
			if samples[i], err = latencySamples(clients[i], urls[i], max(n/blocks, 1), samples[i]); err != nil {
				return nil, err
			}
		}
	}
	p50 := make([]float64, len(urls))
	for i, ds := range samples {
		slices.Sort(ds)
		p50[i] = ds[len(ds)/2]
	}
	return p50, nil
}

var rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrk runs wrk against url, sending headers ("Name: value") on every
// request, and returns requests per second.
func wrk(url string, conns int, d time.Duration, headers ...string) (float64, error) {
	threads := min(conns, 2)
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(d.Seconds()))}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	out, err := exec.CommandContext(ctx, "wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	m := rpsRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk printed no Requests/sec: %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// stampedHeaders are the header lines devstack's proxy stamps by default
// on a request that arrives without trace context, as it writes them.
func stampedHeaders() []string {
	lines := string(propagate.AppendHeaderLines(nil, propagate.Extract(http.Header{}), propagate.DefaultFormats))
	return strings.Split(strings.TrimSuffix(lines, "\r\n"), "\r\n")
}

// startNginx runs nginx as a reverse proxy to upstream, with upstream
// keep-alive and no access log, as a fair baseline. With stamp, it also
// sets on every request the headers devstack's proxy stamps by default,
// with the values devstack would write for a new trace (fixed: nginx
// cannot make trace ids; X-Request-ID is nginx's own $request_id).
func startNginx(dir, upstream string, stamp bool) (string, int, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, nil, err
	}
	addr := freeAddr()
	var set strings.Builder
	if stamp {
		for _, line := range stampedHeaders() {
			name, value, _ := strings.Cut(line, ": ")
			if strings.EqualFold(name, "X-Request-Id") {
				value = "$request_id"
			}
			fmt.Fprintf(&set, "      proxy_set_header %s \"%s\";\n", name, value)
		}
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream up { server %[2]s; keepalive 64; }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
%[4]s    }
  }
}
`, dir, upstream, addr, set.String())
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command("nginx", "-c", path, "-p", dir)
	cmd.Stderr = os.Stderr
	// Its own process group, so that stopping it stops the workers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, fmt.Errorf("starting nginx (apt-get install nginx-light): %w", err)
	}
	// SIGTERM to the master, which stops and reaps its workers; the
	// whole group is killed if it does not in time.
	stop := func() { terminate(cmd, 5*time.Second, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }) }
	if err := waitListening(addr); err != nil {
		stop()
		return "", 0, nil, fmt.Errorf("nginx: %w", err)
	}
	return addr, cmd.Process.Pid, stop, nil
}

// waitListening waits until something accepts connections on addr.
func waitListening(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveUpstream is the upstream every target fronts: 64 B on /64 (and
// any other path), 16 KiB on /16k.
func serveUpstream(addr string) error {
	small := strings.Repeat("x", 64)
	large := strings.Repeat("y", 16<<10)
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/16k" {
			io.WriteString(w, large)
			return
		}
		io.WriteString(w, small)
	}))
}

// procCPU is the user+system CPU time of a process, from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are fields 14 and 15 of the line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// childrenCPU sums procCPU over a process's children (nginx's workers).
func childrenCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var total time.Duration
	for _, c := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(c); err == nil {
			total += procCPU(n)
		}
	}
	return total
}

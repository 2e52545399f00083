// Command faultbench measures devstack's fault injection side by side
// with Toxiproxy's, in one run (issue 19's benchmarks):
//
//   - accuracy: with 100 ms of latency injected, the measured latency
//     minus 100 ms, p50 and p99, at 1 and 32 keep-alive connections,
//     devstack (fault add --latency 100ms, on the request and on the
//     response) against Toxiproxy (a downstream latency toxic of 100 ms),
//     both in front of the same kind of upstream;
//   - probability: an abort at 0.2 over -prob-n keep-alive requests;
//   - throughput: devstack's proxy with the fault plugin loaded and no
//     fault, against a stack with the plugin disabled; and with a fault
//     active on another service.
//
// It runs real processes: two devstack stacks (`devstack up -d`), whose
// services are this binary in upstream mode, and toxiproxy-server.
//
//	go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0
//	go run ./bench/faultbench -toxiproxy $(go env GOPATH)/bin/server
//
// Everything listens on 127.0.0.1; every load run is bounded in count or
// time.
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "upstream" {
		upstream()
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "faultbench:", err)
		os.Exit(1)
	}
}

// upstream answers every request with 64 bytes on $PORT.
func upstream() {
	body := []byte(strings.Repeat("x", 64))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type options struct {
	devstack, toxiproxy string
	n, probN, rounds    int
	duration            time.Duration
	latency             time.Duration
}

func run() error {
	var o options
	flag.StringVar(&o.devstack, "devstack", "", "devstack binary (default: go build ./cmd/devstack)")
	flag.StringVar(&o.toxiproxy, "toxiproxy", "", "toxiproxy-server binary (go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0); empty: skip Toxiproxy")
	flag.IntVar(&o.n, "n", 2000, "requests per accuracy point (split over the connections)")
	flag.IntVar(&o.probN, "prob-n", 10000, "requests for the probability check")
	flag.IntVar(&o.rounds, "rounds", 3, "throughput rounds, each target once per round, alternating")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "each throughput run's length")
	flag.DurationVar(&o.latency, "latency", 100*time.Millisecond, "the injected latency")
	flag.Parse()

	dir, err := os.MkdirTemp("", "faultbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if o.devstack == "" {
		o.devstack = filepath.Join(dir, "devstack")
		if out, err := exec.Command("go", "build", "-o", o.devstack, "./cmd/devstack").CombinedOutput(); err != nil {
			return fmt.Errorf("building devstack (run from the repository root): %v\n%s", err, out)
		}
	}
	ctx := context.Background()

	// Two stacks: "plugged" runs the fault plugin, "bare" has it disabled.
	ports := freePorts(5)
	plugged := &stack{o: o, dir: filepath.Join(dir, "plugged"), state: filepath.Join(dir, "state")}
	bare := &stack{o: o, dir: filepath.Join(dir, "bare"), state: plugged.state}
	if err := plugged.up(self, "fbplugged", map[string]int{"svc": ports[0], "other": ports[1]}, false); err != nil {
		return err
	}
	defer plugged.down()
	if err := bare.up(self, "fbbare", map[string]int{"svc": ports[2]}, true); err != nil {
		return err
	}
	defer bare.down()
	devURL := fmt.Sprintf("http://127.0.0.1:%d/", ports[0])
	bareURL := fmt.Sprintf("http://127.0.0.1:%d/", ports[2])

	// The same upstream, for Toxiproxy and for direct measurements.
	up := exec.Command(self, "upstream")
	up.Env = append(os.Environ(), "PORT="+strconv.Itoa(ports[3]))
	if err := up.Start(); err != nil {
		return err
	}
	defer func() { up.Process.Kill(); up.Wait() }()
	directURL := fmt.Sprintf("http://127.0.0.1:%d/", ports[3])
	if err := waitHTTP(ctx, directURL); err != nil {
		return err
	}
	var toxURL string
	if o.toxiproxy != "" {
		apiPort, listen := freePorts(1)[0], freePorts(1)[0]
		tp := exec.Command(o.toxiproxy, "-host", "127.0.0.1", "-port", strconv.Itoa(apiPort))
		if err := tp.Start(); err != nil {
			return fmt.Errorf("starting toxiproxy: %w", err)
		}
		defer func() { tp.Process.Kill(); tp.Wait() }()
		c := toxiproxy.NewClient(fmt.Sprintf("127.0.0.1:%d", apiPort))
		var px *toxiproxy.Proxy
		deadline := time.Now().Add(10 * time.Second)
		for {
			px, err = c.CreateProxy("svc", fmt.Sprintf("127.0.0.1:%d", listen), fmt.Sprintf("127.0.0.1:%d", ports[3]))
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("toxiproxy: %w", err)
		}
		if _, err := px.AddToxic("lat", "latency", "downstream", 1, toxiproxy.Attributes{"latency": o.latency.Milliseconds()}); err != nil {
			return fmt.Errorf("toxiproxy: %w", err)
		}
		toxURL = fmt.Sprintf("http://127.0.0.1:%d/", listen)
	}

	// Accuracy.
	fmt.Printf("accuracy: %v injected; added = measured latency - %v (ms)\n", o.latency, o.latency)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "conns\ttarget\tp50\tp99\tp50 added\tp99 added")
	for _, conns := range []int{1, 32} {
		// devstack holds the request (before the service sees it) or the
		// response (after it answered, as Toxiproxy's downstream latency
		// toxic does): both are measured.
		// "direct idle" sends each request after the client idled for the
		// injected latency itself: the whole path as cold as behind an
		// injected delay (after 100 ms a virtual CPU wakes slowly), which
		// is the floor any tool's "added" stands on.
		targets := []struct {
			name, url string
			direction string        // devstack's fault, "" for none
			idle      time.Duration // the client waits this long before each request
		}{{"direct", directURL, "", 0}, {"direct idle", directURL, "", o.latency}, {"devstack request", devURL, "request", 0}, {"devstack response", devURL, "response", 0}, {"toxiproxy downstream", toxURL, "", 0}}
		for _, t := range targets {
			if t.url == "" {
				continue
			}
			if t.direction != "" {
				if err := plugged.fault("clear"); err != nil {
					return err
				}
				if err := plugged.fault("add", "svc", "--latency", o.latency.String(), "--direction", t.direction); err != nil {
					return err
				}
			}
			lat, _, err := loadIdle(ctx, t.url, conns, o.n, 0, t.idle)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			p50, p99 := pct(lat, 50), pct(lat, 99)
			added := func(d time.Duration) string {
				if t.url == directURL {
					return "-"
				}
				return ms(d - o.latency)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", conns, t.name, ms(p50), ms(p99), added(p50), added(p99))
		}
	}
	tw.Flush()
	if err := plugged.fault("clear"); err != nil {
		return err
	}

	// Probability, per request on kept-alive connections.
	if err := plugged.fault("add", "svc", "--abort", "503", "--probability", "0.2"); err != nil {
		return err
	}
	_, codes, err := load(ctx, devURL, 8, o.probN, 0)
	if err != nil {
		return err
	}
	fmt.Printf("\nprobability 0.2 over %d requests on 8 keep-alive connections: %.2f%% aborted (target 20%% ± 1.5%%)\n",
		o.probN, 100*float64(codes[503])/float64(o.probN))
	if err := plugged.fault("clear"); err != nil {
		return err
	}

	// Throughput at 32 connections, alternating.
	fmt.Printf("\nthroughput, 32 connections, %v per run, %d rounds (req/s)\n", o.duration, o.rounds)
	var withPlugin, without, otherFaulted []float64
	for r := range o.rounds {
		for _, step := range []struct {
			into *[]float64
			url  string
			prep func() error
		}{
			{&withPlugin, devURL, nil},
			{&without, bareURL, nil},
			{&otherFaulted, devURL, func() error { return plugged.fault("add", "other", "--latency", "50ms") }},
		} {
			if step.prep != nil {
				if err := step.prep(); err != nil {
					return err
				}
			}
			_, codes, err := load(ctx, step.url, 32, 0, o.duration)
			if err != nil {
				return err
			}
			n := 0
			for _, c := range codes {
				n += c
			}
			*step.into = append(*step.into, float64(n)/o.duration.Seconds())
			if step.prep != nil {
				if err := plugged.fault("clear"); err != nil {
					return err
				}
			}
		}
		fmt.Printf("round %d: plugin loaded %.0f, no plugin %.0f, fault on another service %.0f\n", r+1, withPlugin[r], without[r], otherFaulted[r])
	}
	m1, m2, m3 := median(withPlugin), median(without), median(otherFaulted)
	fmt.Printf("medians: plugin loaded, no fault %.0f; no plugin %.0f (%.3fx; target >= 0.97x); a fault on another service %.0f (%.3fx of no fault)\n",
		m1, m2, m1/m2, m3, m3/m1)
	return nil
}

// stack is one devstack project run by the devstack binary.
type stack struct {
	o          options
	dir, state string
	name       string
}

func (s *stack) cmd(args ...string) *exec.Cmd {
	c := exec.Command(s.o.devstack, append([]string{"-p", s.name}, args...)...)
	c.Dir = s.dir
	c.Env = append(os.Environ(), "DEVSTACK_STATE_DIR="+s.state, "NO_COLOR=1")
	return c
}

func (s *stack) up(self, name string, services map[string]int, noPlugin bool) error {
	s.name = name
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\n", name)
	if noPlugin {
		b.WriteString("x-devstack:\n  plugins:\n    - {name: faultinject, disabled: true}\n")
	}
	b.WriteString("services:\n")
	for _, svc := range slices.Sorted(mapsKeys(services)) {
		p := services[svc]
		fmt.Fprintf(&b, "  %s:\n    x-devstack: {run: [%q, upstream], port_env: PORT}\n    ports: [\"127.0.0.1:%d:%d\"]\n", svc, self, p, p)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "devstack.yaml"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	if out, err := s.cmd("up", "-d").CombinedOutput(); err != nil {
		return fmt.Errorf("devstack up %s: %v\n%s", name, err, out)
	}
	for _, p := range services {
		if err := waitHTTP(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/", p)); err != nil {
			return err
		}
	}
	return nil
}

func (s *stack) fault(args ...string) error {
	if out, err := s.cmd(append([]string{"fault"}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("devstack fault %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (s *stack) down() { s.cmd("down").Run() }

// load sends requests on conns keep-alive connections: n in all (split
// evenly), or for d when n is 0. It returns each request's latency and a
// count per status. Each connection's first request, which dials, is a
// warm-up and counts in neither: with 32 connections dialled at once it
// would otherwise be the p99.
func load(ctx context.Context, url string, conns, n int, d time.Duration) ([]time.Duration, map[int]int, error) {
	return loadIdle(ctx, url, conns, n, d, 0)
}

// loadIdle is load with the client idling for idle before each request.
func loadIdle(ctx context.Context, url string, conns, n int, d, idle time.Duration) ([]time.Duration, map[int]int, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	codes := map[int]int{}
	var firstErr atomic.Value
	var sent atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			lc := map[int]int{}
			for warm := true; ; warm = false {
				if !warm && (n > 0 && sent.Add(1) > int64(n) || n == 0 && time.Now().After(deadline)) {
					break
				}
				if idle > 0 {
					time.Sleep(idle)
				}
				start := time.Now()
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := client.Do(req)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if warm {
					continue
				}
				local = append(local, time.Since(start))
				lc[resp.StatusCode]++
			}
			mu.Lock()
			lat = append(lat, local...)
			for k, v := range lc {
				codes[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, nil, err
	}
	slices.Sort(lat)
	return lat, codes, nil
}

func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePorts(n int) []int {
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, len(sorted)*p/100)
	return sorted[i]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func mapsKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

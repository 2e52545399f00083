package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner/docker"
)

// A container service with develop.watch: sync copies a changed file into
// the running container through the engine (the image is FROM scratch:
// no shell, no tar), sync+exec runs a command in it, sync+restart replaces
// it keeping what was synced, and rebuild builds the image again and replaces the
// container without downtime: the new one starts beside the old one, no
// request of a load loop fails, a new container that fails leaves the
// old one serving, and down leaves nothing.
func TestDockerWatchSyncsIntoTheContainerAndRebuilds(t *testing.T) {
	d := requireEngine(t)
	dir := t.TempDir()
	port := freeLoopbackPort(t)
	name := projectName("watch")
	src := `package main

import (
	"net/http"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hook" { // a sync+exec command
		in, err := os.ReadFile("in.txt")
		wd, _ := os.Getwd()
		if err != nil {
			os.Exit(4)
		}
		os.WriteFile("/www/hook.txt", []byte(os.Getenv("HOOK")+" "+wd+" "+string(in)), 0o644)
		return
	}
	if b, _ := os.ReadFile("/motd.txt"); string(b) == "crash" {
		os.Exit(3)
	}
	serve := func(file string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			b, err := os.ReadFile(file)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Write(b)
		}
	}
	http.HandleFunc("/", serve("/www/index.html"))
	http.HandleFunc("/motd", serve("/motd.txt"))
	http.HandleFunc("/hook", serve("/www/hook.txt"))
	http.HandleFunc("/conf", serve("/conf/x.txt"))
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`
	for f, data := range map[string]string{
		"web/main.go":    src,
		"web/go.mod":     "module web\n\ngo 1.22\n",
		"www/index.html": "v1",
		"motd.txt":       "motd 1",
		"hooks/in.txt":   "in 1",
		"conf/x.txt":     "conf 1",
		"Dockerfile":     "FROM scratch\nCOPY web/web /web\nCOPY www /www\nCOPY motd.txt /motd.txt\nENTRYPOINT [\"/web\"]\n",
		"devstack.yaml": fmt.Sprintf(`services:
  web:
    build: .
    # ambassador: always, so that a reload must hand the ambassador over
    # build: runs on the host before each rebuild's image build; it fails
    # for a motd.txt that says "broken"
    x-devstack: {backend: docker, port_env: PORT, ambassador: always, build: grep -vqx broken motd.txt}
    ports: ["127.0.0.1:%[1]d:%[1]d"]
    develop:
      watch:
        - {path: ./www, action: sync, target: /www}
        - {path: ./motd.txt, action: rebuild}
        - {path: ./conf, action: sync+restart, target: /conf}
        - path: ./hooks
          action: sync+exec
          target: /hooks
          exec: {command: [/web, hook], working_dir: /hooks, environment: {HOOK: from-exec}}
`, port),
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), []byte(data), 0o644)
	}
	build := exec.Command("go", "build", "-o", "web", ".")
	build.Dir, build.Env = filepath.Join(dir, "web"), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the service: %v\n%s", err, out)
	}
	p := newDockerProject(t, dir, name, d)
	tag := name + "-web"
	var images []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, img := range append(images, tag) {
			_, _ = d.Client().ImageRemove(ctx, img, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	})
	p.must("up", "-d", "--watch")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("devstack logs web:\n%s", p.run("logs", "web").stdout)
		}
	})
	imageID := func() string {
		img, err := d.Client().ImageInspect(t.Context(), tag)
		if err != nil {
			t.Fatal(err)
		}
		return img.ID
	}
	images = append(images, imageID())
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	waitAnswer(t, url, "v1")

	// sync
	before := p.ps()["web"].ID
	os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("v2"), 0o644)
	waitAnswer(t, url, "v2")
	if st := p.ps()["web"]; st.ID != before {
		t.Fatalf("a sync replaced the container (%s → %s); it must copy into the running one", before, st.ID)
	}
	if logs := p.must("logs", "web").stdout; !strings.Contains(logs, "synced 1 file(s)") || !strings.Contains(logs, "www/index.html changed") {
		t.Fatalf("the log does not say what was synced:\n%s", logs)
	}

	// sync+exec: the file is copied in, then the command runs in the
	// running container (through the engine: no shell in it), in its
	// working_dir and with its environment.
	os.WriteFile(filepath.Join(dir, "hooks", "in.txt"), []byte("in 2"), 0o644)
	waitAnswer(t, url+"hook", "from-exec /hooks in 2")
	if st := p.ps()["web"]; st.ID != before || st.Reloads != 0 {
		t.Fatalf("a sync+exec replaced the container (%s → %s); it must run in the running one", before, st.ID)
	}

	// sync+restart: the file is copied in, then a new container replaces
	// the old one; it has that file, and what the earlier sync copied in
	// too, as a container restarted in place would.
	os.WriteFile(filepath.Join(dir, "conf", "x.txt"), []byte("conf 2"), 0o644)
	deadline := time.Now().Add(2 * time.Minute)
	for st := p.ps()["web"]; st.Reloads != 1 || st.ID == before; st = p.ps()["web"] {
		if time.Now().After(deadline) {
			t.Fatalf("no restart after a sync+restart: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitAnswer(t, url+"conf", "conf 2")
	waitAnswer(t, url, "v2")

	// rebuild, under a bounded load loop through the proxy: each new
	// container starts beside the old one, the proxy switches once its
	// port answers, and no request fails.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			for range 100000 { // bounded
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url + "motd")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	ambassador := func() string {
		t.Helper()
		res, err := d.Client().ContainerList(t.Context(), client.ContainerListOptions{
			Filters: make(client.Filters).Add("label", docker.LabelProject+"="+name, docker.LabelRole+"=ambassador")})
		if err != nil || len(res.Items) != 1 {
			t.Fatalf("the ambassador of web: %d containers, %v", len(res.Items), err)
		}
		return res.Items[0].ID
	}
	amb := ambassador()
	const reloads = 2
	for i := 2; i < 2+reloads; i++ {
		want := fmt.Sprintf("motd %d", i)
		os.WriteFile(filepath.Join(dir, "motd.txt"), []byte(want), 0o644)
		waitAnswer(t, url+"motd", want)
		images = append(images, imageID())
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during %d reloads of a container; first: %v", n, n+ok.Load(), reloads, firstErr.Load())
	}
	t.Logf("%d requests answered during %d reloads of a container, none failed", ok.Load(), reloads)
	if ok.Load() < reloads {
		t.Fatalf("only %d requests ran during the reloads; the load loop did not load", ok.Load())
	}
	st := p.ps()["web"]
	if st.Reloads != 1+reloads || st.ReloadP50 <= 0 || images[0] == images[1] {
		t.Fatalf("after the rebuilds: %+v (images %v)", st, images)
	}
	if logs := p.must("logs", "web").stdout; !strings.Contains(logs, "started beside the old one, proxy switched") {
		t.Fatalf("the log does not say the container was replaced beside the old one:\n%s", logs)
	}
	// One container of web is left, under the replica's own name, and the
	// ambassador is the one it had (callers by name never lost it).
	containers := func() []string {
		t.Helper()
		res, err := d.Client().ContainerList(t.Context(), client.ContainerListOptions{All: true,
			Filters: make(client.Filters).Add("label", docker.LabelProject+"="+name, docker.LabelService+"=web")})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range res.Items {
			n := strings.TrimPrefix(c.Names[0], "/")
			if c.Labels[docker.LabelRole] == "" && (c.Labels[docker.LabelStandby] == "" || !strings.Contains(n, "-next-")) {
				names = append(names, n)
			}
		}
		return names
	}
	// After the first reload, a standby container took each over: its
	// holder put the rebuilt image's changed files in place.
	if logs := p.must("logs", "web").stdout; strings.Count(logs, "started the new code in standby container") < reloads {
		t.Fatalf("the standby took fewer than %d reloads over:\n%s", reloads, logs)
	}
	if got := containers(); len(got) != 1 || got[0] != name+"-web-1" {
		t.Fatalf("containers of web after the reloads: %v; want only %s-web-1", got, name)
	}
	if ambassador() != amb {
		t.Fatal("the reload replaced the ambassador; it must keep it")
	}
	// The synced file came from the image again, as compose watch does:
	// the rebuilt image has www/index.html as it is now.
	waitAnswer(t, url, "v2")

	// A new container that exits at start: the old one keeps serving, ps
	// says why, and nothing of the failed one is left.
	os.WriteFile(filepath.Join(dir, "motd.txt"), []byte("crash"), 0o644)
	deadline = time.Now().Add(2 * time.Minute)
	for st = p.ps()["web"]; st.ReloadError == "" && time.Now().Before(deadline); st = p.ps()["web"] {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(st.ReloadError, "keeps serving") || !strings.Contains(st.ReloadError, "exited") || st.State != "running" {
		t.Fatalf("after a reload to a crashing container: %+v", st)
	}
	images = append(images, imageID())
	waitAnswer(t, url+"motd", fmt.Sprintf("motd %d", 1+reloads))
	if got := containers(); len(got) != 1 || got[0] != name+"-web-1" {
		t.Fatalf("containers of web after a failed reload: %v", got)
	}
	// A build that fails (x-devstack.build, on the host): the image is not
	// rebuilt, the old container keeps serving, ps says why.
	os.WriteFile(filepath.Join(dir, "motd.txt"), []byte("broken"), 0o644)
	deadline = time.Now().Add(2 * time.Minute)
	for st = p.ps()["web"]; !strings.Contains(st.ReloadError, "build failed") && time.Now().Before(deadline); st = p.ps()["web"] {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(st.ReloadError, "keeps serving") || !strings.Contains(st.ReloadError, "build command") || st.State != "running" {
		t.Fatalf("after a failed build: %+v", st)
	}
	waitAnswer(t, url+"motd", fmt.Sprintf("motd %d", 1+reloads))
	p.must("down")
	if left := p.leftovers(t.Context()); len(left) > 0 {
		t.Fatalf("down after reloads left %v", left)
	}
}

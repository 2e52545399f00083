package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// A container service with develop.watch: sync copies a changed file into
// the running container through the engine (the image is FROM scratch:
// no shell, no tar), and rebuild builds the image again and replaces the
// container.
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
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`
	for f, data := range map[string]string{
		"web/main.go":    src,
		"web/go.mod":     "module web\n\ngo 1.22\n",
		"www/index.html": "v1",
		"motd.txt":       "motd 1",
		"Dockerfile":     "FROM scratch\nCOPY web/web /web\nCOPY www /www\nCOPY motd.txt /motd.txt\nENTRYPOINT [\"/web\"]\n",
		"devstack.yaml": fmt.Sprintf(`services:
  web:
    build: .
    x-devstack: {backend: docker, port_env: PORT}
    ports: ["127.0.0.1:%[1]d:%[1]d"]
    develop:
      watch:
        - {path: ./www, action: sync, target: /www}
        - {path: ./motd.txt, action: rebuild}
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

	// rebuild
	os.WriteFile(filepath.Join(dir, "motd.txt"), []byte("motd 2"), 0o644)
	waitAnswer(t, url+"motd", "motd 2")
	images = append(images, imageID())
	st := p.ps()["web"]
	if st.Reloads != 1 || images[0] == images[1] {
		t.Fatalf("after the rebuild: %+v (images %v)", st, images)
	}
	// The synced file came from the image again, as compose watch does:
	// the rebuilt image has www/index.html as it is now.
	waitAnswer(t, url, "v2")
}

package docker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// publishedPort is the host port container id publishes its port 8080 on.
func (s *stack) publishedPort(ctx context.Context, id string) string {
	s.t.Helper()
	res, err := s.b.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	for p, bs := range res.Container.NetworkSettings.Ports {
		if p.Num() == 8080 && len(bs) > 0 {
			return bs[0].HostPort
		}
	}
	s.t.Fatalf("container %s publishes no port 8080", shortID(id))
	return ""
}

// standbys lists the project's containers that carry LabelStandby and
// still have a standby's name (not taken over).
func (s *stack) standbys(ctx context.Context) []string {
	s.t.Helper()
	res, err := s.b.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelProject+"="+s.p.Name, LabelStandby+"=true")})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, c := range res.Items {
		if strings.Contains(firstName(c.Names), "-next-") {
			out = append(out, firstName(c.Names))
		}
	}
	return out
}

// standbyStack starts service b (fronted, with an ambassador and a
// healthcheck) and returns its spec and instance.
func standbyStack(t *testing.T) (*stack, runner.Spec, *Instance, *logs, context.Context) {
	s := newStack(t, `
services:
  b:
    image: {{IMAGE}}
    environment: {NAME: b}
    ports: ["8080"]`+healthy+`
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	l := &logs{}
	spec, _ := s.frontedSpec(ctx, "b", 8080, l)
	inst, err := s.b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("starting b: %v\n%s", err, l)
	}
	cur := inst.(*Instance)
	t.Cleanup(func() { _ = cur.Stop(context.Background(), syscall.SIGKILL, 0) })
	return s, spec, cur, l, ctx
}

// A reload with nothing new in the image but a synced file is taken over
// by the standby: the file is in place, the service answers on the
// standby's port, its healthcheck runs through the holder, its stop
// signal reaches the service, and its stop leaves no container or file.
func TestStandbyTakesAReloadOver(t *testing.T) {
	s, spec, cur, l, ctx := standbyStack(t)
	if err := s.b.PrepareStandby(ctx, spec, cur); err != nil {
		t.Fatalf("preparing a standby: %v\n%s", err, l)
	}
	waiting := s.standbys(ctx)
	if len(waiting) != 1 {
		t.Fatalf("standby containers: %v; want one", waiting)
	}
	src := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(src, []byte("synced v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	next := spec
	next.Synced = []runner.FileCopy{{Src: src, Dst: "/msg"}}
	ni, err := s.b.StartBeside(ctx, next, cur)
	if err != nil {
		t.Fatalf("reload: %v\n%s", err, l)
	}
	n := ni.(*Instance)
	t.Cleanup(func() { _ = n.Stop(context.Background(), syscall.SIGKILL, 0) })
	if len(n.reps) != 1 || !n.reps[0].held || n.reps[0].name != waiting[0] {
		t.Fatalf("the reload started %v; want standby %s taken over\n%s", n.Containers(), waiting[0], l)
	}
	stage := n.stage
	if err := n.ProbeHealth(ctx); err != nil {
		// The service may not listen yet: the holder's probe says so, and
		// passes once it does.
		deadline := time.Now().Add(10 * time.Second)
		for err != nil && time.Now().Before(deadline) {
			err = n.ProbeHealth(ctx)
		}
		if err != nil {
			t.Fatalf("healthcheck through the holder: %v\n%s", err, l)
		}
	}
	// A broken connection to the holder (a probe's deadline cut it) is
	// dialled again.
	_ = n.holder.Close()
	if err := n.ProbeHealth(ctx); err != nil {
		t.Fatalf("healthcheck after the holder's client broke: %v", err)
	}
	port := s.publishedPort(ctx, n.reps[0].id)
	if got, err := answer("http://127.0.0.1:" + port + "/file/msg"); err != nil || got != "synced v2\n" {
		t.Fatalf("/msg in the standby: %q, %v", got, err)
	}
	if got, _ := answer("http://127.0.0.1:" + port + "/"); !strings.HasPrefix(got, "hello from b") {
		t.Fatalf("the standby's service answers %q", got)
	}
	s.b.Switched(ctx, cur, n)
	if err := cur.Stop(ctx, syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(ctx, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if e := n.Wait(); e.Code != 0 {
		t.Fatalf("the service's exit through the holder: %+v; want 0 (it stops on SIGTERM)\n%s", e, l)
	}
	if !strings.Contains(l.String(), "stopping on signal") {
		t.Fatalf("SIGTERM did not reach the service:\n%s", l)
	}
	if _, err := os.Stat(stage); !os.IsNotExist(err) {
		t.Fatalf("the standby's files stayed at %s: %v", stage, err)
	}
	if left := s.standbys(ctx); len(left) != 0 {
		t.Fatalf("standby containers left: %v", left)
	}
}

// A standby made for another configuration is dropped, and the reload
// starts a new container as before; a standby whose instance stops goes
// with it.
func TestStandbyDroppedWhenItDoesNotFit(t *testing.T) {
	s, spec, cur, l, ctx := standbyStack(t)
	if err := s.b.PrepareStandby(ctx, spec, cur); err != nil {
		t.Fatalf("preparing a standby: %v\n%s", err, l)
	}
	other := spec
	other.Env = append(append([]string{}, spec.Env...), "FOO=changed")
	ni, err := s.b.StartBeside(ctx, other, cur)
	if err != nil {
		t.Fatalf("reload: %v\n%s", err, l)
	}
	n := ni.(*Instance)
	t.Cleanup(func() { _ = n.Stop(context.Background(), syscall.SIGKILL, 0) })
	if n.reps[0].held {
		t.Fatalf("a standby of another configuration took the reload over\n%s", l)
	}
	if !strings.Contains(l.String(), "configuration changed since standby") {
		t.Fatalf("the log does not say why the standby was dropped:\n%s", l)
	}
	if left := s.standbys(ctx); len(left) != 0 {
		t.Fatalf("standby containers left after the reload: %v", left)
	}
	s.b.Switched(ctx, cur, n) // n takes the ambassador over
	if err := cur.Stop(ctx, syscall.SIGKILL, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.b.PrepareStandby(ctx, other, n); err != nil {
		t.Fatalf("preparing a standby: %v\n%s", err, l)
	}
	if err := n.Stop(ctx, syscall.SIGKILL, 0); err != nil {
		t.Fatal(err)
	}
	if left := s.standbys(ctx); len(left) != 0 {
		t.Fatalf("standby containers left after its instance stopped: %v", left)
	}
	if _, err := os.Stat(s.b.standbyDir(s.p.Name)); err == nil {
		entries, _ := os.ReadDir(s.b.standbyDir(s.p.Name))
		if len(entries) != 0 {
			t.Fatalf("standby files left: %v", entries)
		}
	}
}

// A rebuild whose new layers come from COPY of the build context is taken
// over by the standby: the files that changed are put in place (a large
// one as a link into the standby's directory), the service answers with
// them. A rebuild that removes a file a COPY copied cannot be: a new
// container starts, and the log says why.
func TestStandbyTakesARebuildOver(t *testing.T) {
	s := newStack(t, `
services:
  web:
    build: ./web
    environment: {NAME: web}
    ports: ["8080"]`+healthy+`
`)
	web := filepath.Join(s.dir, "web")
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(web, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(web, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := func(v byte) []byte {
		b := make([]byte, 2<<20) // above linkAbove: linked, not copied
		for i := range b {
			b[i] = byte(i*7) ^ v
		}
		return b
	}
	write("Dockerfile", []byte("FROM "+testImage+"\nCOPY answer.txt big.bin /srv/\nCOPY site/ /site/\n"))
	write("answer.txt", []byte("v1\n"))
	write("big.bin", big(1))
	write("site/a.txt", []byte("a\n"))
	write("site/b.txt", []byte("b\n"))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	l := &logs{}
	spec, _ := s.frontedSpec(ctx, "web", 8080, l)
	var images []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, id := range append(images, s.p.Name+"-web") {
			_, _ = s.b.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	})
	imageID := func() string {
		img, err := s.b.cli.ImageInspect(ctx, s.p.Name+"-web")
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, img.ID)
		return img.ID
	}
	if err := s.b.Build(ctx, spec); err != nil {
		t.Fatalf("%v\n%s", err, l)
	}
	imageID()
	inst, err := s.b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("starting web: %v\n%s", err, l)
	}
	cur := inst.(*Instance)
	t.Cleanup(func() { _ = cur.Stop(context.Background(), syscall.SIGKILL, 0) })

	reload := func(round int) *Instance {
		t.Helper()
		if err := s.b.PrepareStandby(ctx, spec, cur); err != nil {
			t.Fatalf("round %d: preparing a standby: %v\n%s", round, err, l)
		}
		if err := s.b.Rebuild(ctx, spec); err != nil {
			t.Fatalf("round %d: rebuild: %v\n%s", round, err, l)
		}
		imageID()
		ni, err := s.b.StartBeside(ctx, spec, cur)
		if err != nil {
			t.Fatalf("round %d: reload: %v\n%s", round, err, l)
		}
		n := ni.(*Instance)
		t.Cleanup(func() { _ = n.Stop(context.Background(), syscall.SIGKILL, 0) })
		deadline := time.Now().Add(20 * time.Second)
		for err := n.ProbeHealth(ctx); err != nil; err = n.ProbeHealth(ctx) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the new instance is not healthy: %v\n%s", round, err, l)
			}
		}
		return n
	}
	get := func(n *Instance, path string) string {
		t.Helper()
		got, err := answer("http://127.0.0.1:" + s.publishedPort(ctx, n.reps[0].id) + "/file" + path)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	write("answer.txt", []byte("v2\n"))
	write("big.bin", big(2))
	n := reload(1)
	if !n.reps[0].held {
		t.Fatalf("the standby did not take the rebuild over\n%s", l)
	}
	if !strings.Contains(l.String(), "(2 file(s) put in place)") {
		t.Fatalf("want 2 files put in place (answer.txt and big.bin, not site/):\n%s", l)
	}
	if got := get(n, "/srv/answer.txt"); got != "v2\n" {
		t.Fatalf("/srv/answer.txt after the reload: %q", got)
	}
	if got := get(n, "/srv/big.bin"); got != string(big(2)) {
		t.Fatalf("/srv/big.bin after the reload: %d bytes, not the new content", len(got))
	}
	if got := get(n, "/site/a.txt"); got != "a\n" {
		t.Fatalf("/site/a.txt (unchanged) after the reload: %q", got)
	}
	s.b.Switched(ctx, cur, n)
	if err := cur.Stop(ctx, syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	cur = n

	if err := os.Remove(filepath.Join(web, "site", "b.txt")); err != nil {
		t.Fatal(err)
	}
	n = reload(2)
	if n.reps[0].held {
		t.Fatalf("a standby took over a rebuild that removed a file\n%s", l)
	}
	if !strings.Contains(l.String(), "starting a new container: ") {
		t.Fatalf("the log does not say why the standby was dropped:\n%s", l)
	}
	if got := get(n, "/site/b.txt"); !strings.Contains(got, "no such file") {
		t.Fatalf("/site/b.txt after its removal: %q", got)
	}
	if left := s.standbys(ctx); len(left) != 0 {
		t.Fatalf("standby containers left: %v", left)
	}
}

// A changed file under one of the service's mounts is not put in a
// standby: it would land in the volume.
func TestUnderMount(t *testing.T) {
	svc := &project.Service{Name: "web"}
	svc.Compose.Volumes = []types.ServiceVolumeConfig{{Type: "volume", Source: "data", Target: "/srv/data"}, {Type: "bind", Source: ".", Target: "/app/"}}
	svc.Compose.Tmpfs = []string{"/run:size=1m"}
	for dst, want := range map[string]string{
		"/srv/data": "/srv/data", "/srv/data/x": "/srv/data", "/srv/database": "",
		"/app/main.go": "/app", "/run/x.pid": "/run", "/bin/shop": "",
	} {
		if got := underMount(svc, dst); got != want {
			t.Errorf("underMount(%q) = %q; want %q", dst, got, want)
		}
	}
}

// The standbys' top directory is this user's alone, and one that is not
// (a link left in its place) is refused; a standby's own directory is
// open, for whatever user the container runs as.
func TestMakeStandbyDir(t *testing.T) {
	top := filepath.Join(t.TempDir(), "devstack-sb")
	dir, err := makeStandbyDir(filepath.Join(top, "proj"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{top: 0o700, dir: 0o777, filepath.Join(dir, "f"): 0o755} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", path, fi.Mode(), err, want)
		}
	}
	elsewhere := filepath.Join(t.TempDir(), "devstack-sb")
	if err := os.Symlink(t.TempDir(), elsewhere); err != nil {
		t.Fatal(err)
	}
	if _, err := makeStandbyDir(filepath.Join(elsewhere, "proj")); err == nil || !strings.Contains(err.Error(), "not a directory of this user's") {
		t.Fatalf("a link in place of the top directory: %v; want it refused", err)
	}
}

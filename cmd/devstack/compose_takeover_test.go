package main

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Containers that docker compose made for the project (its labels, its
// <project>-<service>-1 name, the service's published port) must not stop
// up with a name or port conflict: up replaces them, as Compose replaces
// a container whose configuration changed, keeps one-off containers, and
// down removes what Compose made for the project too (its network
// included), as `docker compose down` does.
func TestDockerComposeMadeReplaced(t *testing.T) {
	d := requireEngine(t)
	name := projectName("cmade")
	port, apiPort := freeLoopbackPort(t), freeLoopbackPort(t)
	dir, image := toolProject(t, name, `services:
  web:
    image: $IMAGE
    build: {context: ./tool}
    ports: ["127.0.0.1:`+strconv.Itoa(port)+`:8000"]
  api:
    image: $IMAGE
    ports: ["127.0.0.1:`+strconv.Itoa(apiPort)+`:8000"]
`)
	removeImage(t, d.Client(), image)
	p := newDockerProject(t, dir, name, d)
	p.must("up", "-d") // builds the image
	p.must("down")

	// What `docker compose up -d` leaves: a network and a running
	// container, labelled for the project, the container publishing the
	// service's port; and a one-off container of `docker compose run`.
	ctx := t.Context()
	cl := d.Client()
	labels := func(service, oneoff string) map[string]string {
		return map[string]string{"com.docker.compose.project": name, "com.docker.compose.service": service,
			"com.docker.compose.container-number": "1", "com.docker.compose.oneoff": oneoff,
			"com.docker.compose.config-hash": "0123456789abcdef"}
	}
	composeNetwork := func() {
		t.Helper()
		if _, err := cl.NetworkCreate(ctx, name+"_default", client.NetworkCreateOptions{
			Labels: map[string]string{"com.docker.compose.project": name, "com.docker.compose.network": "default"}}); err != nil {
			t.Fatal(err)
		}
	}
	composeNetwork()
	composeContainer := func(service, oneoff string, publish int) string {
		t.Helper()
		cname := name + "-" + service + "-1"
		if oneoff == "True" {
			cname = name + "-" + service + "-run-1"
		}
		host := &container.HostConfig{NetworkMode: container.NetworkMode(name + "_default")}
		cfg := &container.Config{Image: image, Labels: labels(service, oneoff)}
		if publish != 0 {
			tp, _ := network.PortFrom(8000, network.TCP)
			cfg.ExposedPorts = network.PortSet{tp: {}}
			host.PortBindings = network.PortMap{tp: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(publish)}}}
		}
		res, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{Name: cname, Config: cfg, HostConfig: host})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	made := composeContainer("web", "False", port)
	apiMade := composeContainer("api", "False", apiPort)
	oneoff := composeContainer("web", "True", 0)
	t.Cleanup(func() {
		for _, id := range []string{made, apiMade, oneoff} {
			_, _ = cl.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
		}
	})

	// up -d web replaces web's container only: api's is not its to touch.
	r := p.must("up", "-d", "web")
	if !strings.Contains(r.stderr, "replacing containers that docker compose made for "+name+": "+name+"-web-1 ") {
		t.Errorf("up -d web does not say it replaces web's container that Compose made, and only it:\n%s", r.stderr)
	}
	if _, err := cl.ContainerInspect(ctx, made, client.ContainerInspectOptions{}); err == nil {
		t.Error("the container docker compose made still exists after up")
	}
	if _, err := cl.ContainerInspect(ctx, apiMade, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("up -d web removed api's container: %v", err)
	}
	// A later up of api, through the running supervisor, replaces it.
	p.must("up", "-d", "api")
	if _, err := cl.ContainerInspect(ctx, apiMade, client.ContainerInspectOptions{}); err == nil {
		t.Error("up -d api left the container docker compose made for api")
	}
	if st := p.ps()["api"]; st.State != "running" {
		t.Fatalf("api after up -d api: %+v", st)
	}
	if _, err := cl.ContainerInspect(ctx, oneoff, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("up removed the one-off container of docker compose run: %v", err)
	}
	if st := p.ps()["web"]; st.State != "running" {
		t.Fatalf("web after up: %+v", st)
	}
	if r := p.must("logs", "web"); !strings.Contains(r.stdout, "which docker compose made") {
		t.Errorf("web's log does not say which container was removed:\n%s", r.stdout)
	}

	p.must("down")
	f := make(client.Filters).Add("label", "com.docker.compose.project="+name)
	cs, err := cl.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := cl.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Items) != 0 || len(ns.Items) != 0 {
		t.Errorf("down left %d containers and %d networks labelled for the project by Compose", len(cs.Items), len(ns.Items))
	}

	// A foreground up says so too.
	composeNetwork()
	made = composeContainer("web", "False", port)
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := p.command(fctx, "-p", name, "up")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &out, name+" is up")
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("foreground up exited with %v after Ctrl-C:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "web: removed container "+name+"-web-1 (running), which docker compose made") {
		t.Errorf("foreground up does not say it replaced the container Compose made:\n%s", out.String())
	}

	// With no supervisor running, down removes them too, and says so.
	composeNetwork()
	made = composeContainer("web", "False", port)
	r = p.must("down")
	if !strings.Contains(r.stderr, "removed 1 container(s) that docker compose made for "+name) {
		t.Errorf("down with no stack running does not say it removed Compose's container:\n%s", r.stderr)
	}
	if _, err := cl.ContainerInspect(ctx, made, client.ContainerInspectOptions{}); err == nil {
		t.Error("down with no stack running left the container docker compose made")
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// The engine floor of a container reload: the least a reload that starts
// a new container must ask of the engine, timed from the bench's own
// process through the Engine API: a container like the running payments
// (its image, command, environment, network and healthcheck, on a port of
// its own) is created and started, and its healthcheck run through exec
// until it passes. No file is watched, nothing is built, no proxy is
// switched. Its time against devstack's reload less the build shows how
// much of that is devstack's.
func engineFloor(ctx context.Context, name string, n int) ([]time.Duration, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return nil, fmt.Errorf("the docker engine does not answer: %w", err)
	}
	insp, err := cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspecting %s: %w", name, err)
	}
	c := insp.Container
	hc := c.Config.Healthcheck
	if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		return nil, fmt.Errorf("%s has no CMD healthcheck to run", name)
	}
	var nets []string
	for name := range c.NetworkSettings.Networks {
		nets = append(nets, name)
	}
	var out []time.Duration
	for i := range n {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg := *c.Config
		if i := slices.Index(cfg.Entrypoint, "--"); i >= 0 && c.Config.Labels["dev.devstack.standby"] != "" {
			// payments is a standby that took a reload over: its
			// entrypoint is devstack's holder, then the service's own
			// command, which is what a new container would run.
			cfg.Entrypoint, cfg.Cmd = slices.Clone(cfg.Entrypoint[i+1:]), nil
		}
		cfg.Env = nil
		for _, e := range c.Config.Env {
			if !strings.HasPrefix(e, "PORT=") {
				cfg.Env = append(cfg.Env, e)
			}
		}
		cfg.Env = append(cfg.Env, "PORT="+strconv.Itoa(port))
		p := network.MustParsePort(strconv.Itoa(port) + "/tcp")
		cfg.ExposedPorts = network.PortSet{p: {}}
		cfg.Labels = map[string]string{"dev.devstack.bench": "reload-floor"}
		host := &container.HostConfig{PortBindings: network.PortMap{p: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}}}}
		var nc *network.NetworkingConfig
		if len(nets) > 0 {
			nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{nets[0]: {}}}
		}
		t0 := time.Now()
		created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &cfg, HostConfig: host, NetworkingConfig: nc, Name: fmt.Sprintf("%s-floor-%d", strings.TrimPrefix(c.Name, "/"), i)})
		if err != nil {
			return nil, fmt.Errorf("creating the floor's container: %w", err)
		}
		err = startHealthy(ctx, cli, created.ID, hc.Test[1:])
		took := time.Since(t0)
		_, rerr := cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, client.ContainerRemoveOptions{Force: true})
		if err != nil {
			return nil, err
		}
		if rerr != nil {
			return nil, fmt.Errorf("removing the floor's container: %w", rerr)
		}
		out = append(out, took)
	}
	return out, nil
}

// startHealthy starts container id and runs cmd in it until it exits 0,
// bounded by 30 s.
func startHealthy(ctx context.Context, cli *client.Client, id string, cmd []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("starting the floor's container: %w", err)
	}
	wait := 2 * time.Millisecond
	for {
		if probe(ctx, cli, id, cmd) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the floor's container was not healthy within 30s")
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// probe runs cmd in container id and reports whether it exited 0.
func probe(ctx context.Context, cli *client.Client, id string, cmd []string) bool {
	created, err := cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return false
	}
	att, err := cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, att.Reader) // until the command ends
	att.Close()
	res, err := cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
	return err == nil && res.ExitCode == 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// settled waits until payments has one container again: a reload's old
// container is drained, stopped and removed after the new one answers,
// and the next reload is timed on a quiet engine, not against that
// removal.
func settled(ctx context.Context) error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	f := make(client.Filters).Add("label", "dev.devstack.project=shop", "dev.devstack.service=payments")
	for {
		res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		if err == nil && len(slices.DeleteFunc(res.Items, isStandby)) == 1 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("payments still had %d containers 30s after its reload (%v)", len(res.Items), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// isStandby reports whether c is a standby that has not taken a reload
// over yet (it still has a standby's name).
func isStandby(c container.Summary) bool {
	return c.Labels["dev.devstack.standby"] != "" && len(c.Names) > 0 && strings.Contains(c.Names[0], "-next-")
}

package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/docker/holder"
	"github.com/devstack/devstack/runner/project"
)

// A hot reload of a container service without downtime (runner.Besider):
//
//	old  <project>-<svc>-1            published 127.0.0.1:<private A>  ◀── proxy route
//	new  <project>-<svc>-1-next-<rnd> published 127.0.0.1:<private B>    (same networks, aliases, labels)
//	     … new passes its healthcheck (or its port answers) …
//	proxy route → B; Switched: old renamed <project>-<svc>-1-old-<id>, new takes <project>-<svc>-1
//	     and the ambassador; the runner drains old, then stops and removes it.
//
// Callers by service name reach the ambassador, which relays to the proxy,
// so they follow the switch with the host's callers; without an
// ambassador both containers answer to the service's names until the old
// one is removed. Both carry the project's labels, so ps and down find
// either.

var (
	_ runner.Besider      = (*Backend)(nil)
	_ runner.PortProber   = (*Instance)(nil)
	_ runner.HealthProber = (*Instance)(nil)
)

// ProbeHealth implements runner.HealthProber: the service's healthcheck
// runs once in each container through the engine's exec, as the engine
// runs it (CMD directly, CMD-SHELL with /bin/sh -c).
func (i *Instance) ProbeHealth(ctx context.Context) error {
	hc := i.spec.Service.Healthcheck()
	if hc == nil {
		return errors.New("the service has no healthcheck")
	}
	if i.holder != nil {
		// A standby's holder forks the probe in the container: no exec.
		code, out, err := i.probeHolder(ctx, hc.Test.Argv())
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(out))
		}
		return nil
	}
	var out bytes.Buffer
	for _, id := range i.containerIDs() {
		out.Reset()
		code, err := i.b.Exec(ctx, id, ExecOptions{Cmd: hc.Test.Argv(), Stdout: &out, Stderr: &out})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(out.String()))
		}
	}
	return nil
}

// StartBeside implements runner.Besider: it starts new containers of
// spec's service (which publishes fresh private ports) while old's keep
// serving, under temporary names, with the same networks, aliases and
// labels. old's ambassador, if any, stays old's until Switched.
func (b *Backend) StartBeside(ctx context.Context, spec runner.Spec, old runner.Instance) (runner.Instance, error) {
	p, svc := spec.Project, spec.Service
	oi, ok := old.(*Instance)
	if !ok || oi == nil {
		return nil, fmt.Errorf("%w: no running container of service %q to start beside", runner.ErrNotBeside, svc.Name)
	}
	if why := notBeside(p, svc); why != "" {
		return nil, fmt.Errorf("%w: %s", runner.ErrNotBeside, why)
	}
	imageID, err := b.ensureImage(ctx, spec)
	if err != nil {
		return nil, err
	}
	if oi.ambassador() == nil && !oi.shared {
		// The old containers answer to the service's names themselves (it
		// runs without an ambassador): so do the new ones.
		spec.Ambassador = nil
	}
	pl, err := planFor(spec, imageID)
	if err != nil {
		return nil, err
	}
	if err := b.ensureNetworks(ctx, p, svc); err != nil {
		return nil, err
	}
	if err := b.ensureVolumes(ctx, p, svc); err != nil {
		return nil, err
	}
	if sb := b.takeStandby(spec); sb != nil {
		if inst, err := b.startStandby(ctx, sb, spec, pl, imageID, oi); inst != nil || err != nil {
			return inst, err
		}
	}
	n := replicas(svc)
	inst := newInstance(b, spec, pl, n)
	// The project's shared ambassador answers to the service's names for
	// the new containers as it did for the old ones.
	inst.shared = oi.shared
	suffix := "-next-" + randomHex(3)
	for num := 1; num <= n; num++ {
		// What a sync put in the old containers, the new ones have too.
		if err := b.addReplica(ctx, inst, pl, containerName(p, svc, num)+suffix, num); err != nil {
			inst.abort()
			return nil, err
		}
	}
	if err := inst.start(ctx); err != nil {
		inst.abort()
		return nil, fmt.Errorf("starting service %q: %w", svc.Name, err)
	}
	return inst, nil
}

// notBeside says why svc cannot run twice at once, "" when it can.
func notBeside(p *project.Project, svc *project.Service) string {
	if svc.Compose.ContainerName != "" {
		return fmt.Sprintf("service %q sets container_name %q, which only one container can have", svc.Name, svc.Compose.ContainerName)
	}
	if svc.Compose.NetworkMode != "" {
		return fmt.Sprintf("service %q runs with network_mode %q", svc.Name, svc.Compose.NetworkMode)
	}
	for _, o := range p.Services {
		if o.Compose.NetworkMode == "service:"+svc.Name {
			return fmt.Sprintf("service %q runs in the network namespace of %q", o.Name, svc.Name)
		}
		for _, v := range o.Compose.VolumesFrom {
			if name, _, _ := strings.Cut(v, ":"); name == svc.Name {
				return fmt.Sprintf("service %q mounts the volumes of %q (volumes_from)", o.Name, svc.Name)
			}
		}
	}
	return ""
}

// Switched implements runner.Besider: the proxy routes to next now. The
// old containers give their names to the new ones (so that the service's
// containers keep the names Compose gives them), and next takes over the
// ambassador, which old's stop then leaves running. A rename that fails
// is reported and leaves the names as they were: nothing depends on them.
func (b *Backend) Switched(ctx context.Context, old, next runner.Instance) {
	oi, ok1 := old.(*Instance)
	ni, ok2 := next.(*Instance)
	if !ok1 || !ok2 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	for _, nr := range ni.reps {
		i := slices.IndexFunc(oi.reps, func(r *replica) bool { return r.num == nr.num })
		if i < 0 {
			continue
		}
		or := oi.reps[i]
		canonical := containerName(ni.spec.Project, ni.spec.Service, nr.num)
		if _, err := b.cli.ContainerRename(rctx, or.id, client.ContainerRenameOptions{NewName: canonical + "-old-" + shortID(or.id)}); err != nil {
			fmt.Fprintf(ni.spec.Status, "renaming the replaced container %s: %v\n", or.name, err)
			continue
		}
		if _, err := b.cli.ContainerRename(rctx, nr.id, client.ContainerRenameOptions{NewName: canonical}); err != nil {
			fmt.Fprintf(ni.spec.Status, "renaming container %s to %s: %v\n", nr.name, canonical, err)
		}
	}
	if amb := oi.takeAmbassador(); amb != nil {
		a := &replica{id: amb.id, name: amb.name, adopted: true}
		ni.setAmbassador(a)
		go ni.followAmbassador(a, nil, nil)
	}
}

// ProbePort implements runner.PortProber. The engine's port proxy
// (docker-proxy) accepts a connection to a published port whether or not
// the container listens, and closes it at once when nothing does; so the
// port answers when a connection stays open (or the service speaks
// first) for a moment.
func (i *Instance) ProbePort(ctx context.Context, target, published uint16) error {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(published))))
	if err != nil {
		return fmt.Errorf("port %d (published on %d): %w", target, published, err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(probeHold))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return fmt.Errorf("port %d (published on %d): nothing listens in the container yet (%v)", target, published, err)
}

// probeHold is how long a probe's connection must stay open for the
// container's port to count as listening: the engine's port proxy closes
// it within a millisecond or so when nothing listens.
const probeHold = 30 * time.Millisecond

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hostBuild runs the service's x-devstack.build on the host, in its
// workdir, before a rebuild of its image: an image that copies in what
// the host builds (the shop's FROM scratch image and its static binary)
// gets the new code that way. The output goes to the service's log.
func hostBuild(ctx context.Context, spec runner.Spec) error {
	c := spec.Service.X.Build
	if c.Empty() {
		return nil
	}
	argv := c.Argv()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = spec.Project.Workdir(spec.Service)
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build command %q failed: %w", c.Args, err)
	}
	return nil
}

// startStandby has standby sb take the reload to spec's new instance
// over (standby.go). It returns nil and no error when sb cannot (it is
// then removed, and StartBeside starts a new container as before).
func (b *Backend) startStandby(ctx context.Context, sb *standby, spec runner.Spec, pl *plan, imageID string, old *Instance) (runner.Instance, error) {
	why, err := b.activate(ctx, sb, spec, imageID)
	if why != "" || err != nil {
		if err != nil {
			why = err.Error()
		}
		fmt.Fprintf(spec.Status, "starting a new container: %s\n", why)
		b.discard(sb)
		return nil, nil
	}
	inst := newInstance(b, spec, pl, 1)
	inst.shared = old.shared
	inst.reps = []*replica{{id: sb.id, name: sb.name, num: 1, held: true}}
	inst.holder, inst.stage = sb.hc, sb.dir
	if err := inst.start(ctx); err != nil {
		inst.abort()
		return nil, fmt.Errorf("following standby container %s: %w", sb.name, err)
	}
	return inst, nil
}

// probeHolder runs argv through the instance's holder. A client whose
// call broke (a deadline cut it) is closed for good, so a second try
// dials the holder again.
func (i *Instance) probeHolder(ctx context.Context, argv []string) (int, string, error) {
	for try := 0; ; try++ {
		i.holderMu.Lock()
		c := i.holder
		i.holderMu.Unlock()
		code, out, err := c.Probe(ctx, argv, probeTimeout(ctx))
		var refused *holder.Error
		if err == nil || errors.As(err, &refused) || try > 0 || ctx.Err() != nil {
			return code, out, err
		}
		nc, derr := holder.Dial(ctx, filepath.Join(i.stage, holderSock))
		if derr != nil {
			return 0, "", fmt.Errorf("%w (dialling it again: %v)", err, derr)
		}
		_ = c.Close()
		i.holderMu.Lock()
		i.holder = nc
		i.holderMu.Unlock()
	}
}

// probeTimeout is what is left of ctx's time, less a margin so that the
// holder's answer (a timed-out probe) comes before ctx ends; a minute
// when ctx has no deadline.
func probeTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d)-50*time.Millisecond, 10*time.Millisecond)
	}
	return time.Minute
}

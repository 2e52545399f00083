package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/docker/holder"
)

// A standby is the next instance of a service, started ahead of its
// reload. Most of a container's start is the engine's own work (the
// container, its network namespace, its root filesystem): 250-400 ms on
// an engine with fuse-overlayfs, against a p50 target of 150 ms for a
// whole reload. None of it depends on the new code, so after a reload
// the runner asks for a standby (runner.Standbyer), and this backend
// starts a container like the one a reload would start, from the image
// the service runs now, whose process is a holder (devstack holder) that
// waits:
//
//	<project>-<svc>-1-next-<rnd>    PID 1: /.devstack/bin/devstack holder --socket /.devstack/s/holder.sock -- <the service's command>
//	  /.devstack/bin, /.devstack/lib  the devstack executable and its loader and libraries (read-only binds)
//	  /.devstack/s                    a directory of devstack's on this host (bind): the holder's socket, staged files
//
// The next reload rebuilds the image as before. When the only layers that
// changed came from COPY instructions of the build context (copyDiff), the
// files they changed are staged in the standby's directory and the holder
// puts them in place (files above linkAbove as symlinks into the stage,
// which costs nothing on the container's storage driver; smaller ones
// copied), then starts the service's command as its child and forwards
// signals to it. The healthcheck runs through the holder (no exec), and
// the proxy switches as for any replacement. Anything else (a RUN layer,
// a removed file, a changed ENTRYPOINT or environment, a different
// configuration) drops the standby and starts a new container, as before.
//
// It stays ineligible where a waiting container could answer for the
// service: a service that runs without the ambassador it was given (its
// containers answer to the service's name), or that the file keeps from
// having one (x-devstack.ambassador: never), or with ports callers reach
// straight (expose:). A service with no ambassador because no other
// service names it (the supervisor's choice) can have a standby: it
// answers to the service's name while it waits, but nothing calls it so.
const (
	standbyRoot  = "/.devstack"
	standbyStage = standbyRoot + "/s"
	holderSock   = "holder.sock"
	// linkAbove is the size above which a staged file is linked rather
	// than copied into the container: writing 10 MB through
	// fuse-overlayfs takes 65 ms here, a symlink nothing.
	linkAbove = 1 << 20
	// standbyStartPeriod keeps a standby's healthcheck "starting" while it
	// waits: failures in the start period do not count, and the first
	// success after the service starts makes it healthy as usual.
	standbyStartPeriod = 1000 * time.Hour
	// holderDial bounds the wait for a new standby's holder to listen.
	holderDial = 10 * time.Second
)

// standby is one service's standby container.
type standby struct {
	key      string // standbyKey of the spec it was made for
	imageID  string // the image it runs
	id, name string
	dir      string // the host side of standbyStage
	cur      *Instance
	hc       *holder.Client
}

// standbyKey identifies what a standby can stand in for: the container a
// reload of spec would create, whatever its image.
func standbyKey(spec runner.Spec) (string, error) {
	pl, err := planFor(spec, "")
	if err != nil {
		return "", err
	}
	return pl.hash, nil
}

// PrepareStandby implements runner.Standbyer.
func (b *Backend) PrepareStandby(ctx context.Context, spec runner.Spec, cur runner.Instance) error {
	ci, ok := cur.(*Instance)
	if !ok || ci == nil {
		return errors.New("no running container to stand by for")
	}
	p, svc := spec.Project, spec.Service
	if why := b.noStandby(ctx, spec, ci); why != "" {
		return errors.New(why)
	}
	files, err := b.holderFiles(ctx)
	if err != nil {
		return err
	}
	tag := imageName(p, svc)
	img, err := b.cli.ImageInspect(ctx, tag)
	if err != nil {
		return fmt.Errorf("inspecting image %s: %w", tag, err)
	}
	pl, err := planFor(spec, img.ID)
	if err != nil {
		return err
	}
	key, err := standbyKey(spec)
	if err != nil {
		return err
	}
	var imgEp, imgCmd []string
	var imgHC *container.HealthConfig
	exposed := map[string]struct{}{}
	if ic := img.Config; ic != nil {
		imgEp, imgCmd, exposed = ic.Entrypoint, ic.Cmd, ic.ExposedPorts
		if h := ic.Healthcheck; h != nil {
			imgHC = &container.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}
		}
	}
	argv := commandOf(pl.config, imgEp, imgCmd)
	if len(argv) == 0 {
		return fmt.Errorf("service %q has no command: neither it nor image %s sets one", svc.Name, tag)
	}
	fronted := map[uint16]bool{}
	for _, pt := range svc.Ports {
		fronted[pt.Target] = true
	}
	for t := range exposed {
		num, proto, _ := strings.Cut(t, "/")
		n, _ := strconv.Atoi(num)
		if !fronted[uint16(n)] && proto != "udp" {
			return fmt.Errorf("image %s exposes port %s, which callers reach straight, and a waiting container would answer", tag, t)
		}
	}
	name := containerName(p, svc, 1) + "-next-" + randomHex(3)
	// Short: the socket's path must fit a sockaddr_un (108 bytes).
	dir, err := makeStandbyDir(b.standbyDir(p.Name))
	if err != nil {
		return fmt.Errorf("making the standby's directory: %w", err)
	}
	cfg := *pl.config
	cfg.Image = img.ID // the image it runs, whatever the tag names later
	cfg.Labels = maps.Clone(cfg.Labels)
	// A later `up` must not adopt it as the service's container: it may
	// hold a process that never started the service.
	cfg.Labels[LabelConfigHash] = "standby-" + pl.hash
	cfg.Labels[composeConfigHash] = "standby-" + pl.hash
	cfg.Labels[LabelStandby] = "true"
	cfg.Entrypoint, cfg.Cmd = holderArgv(files, argv), nil
	if hc := healthOf(cfg.Healthcheck, imgHC); hc != nil {
		h := *hc
		h.StartPeriod = standbyStartPeriod
		cfg.Healthcheck = &h
	}
	host := *pl.host
	host.Mounts = slices.Clone(host.Mounts)
	for _, f := range files {
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: f.src, Target: holderPath(f), ReadOnly: true})
	}
	host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: dir, Target: standbyStage})
	spl := *pl
	spl.config, spl.host = &cfg, &host
	id, err := b.create(ctx, &spl, name, 1)
	if err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("creating standby container %s: %w", name, err)
	}
	sb := &standby{key: key, imageID: img.ID, id: id, name: name, dir: dir, cur: ci}
	fail := func(err error) error {
		b.discard(sb)
		return err
	}
	if _, err := b.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fail(fmt.Errorf("starting standby container %s: %w", name, err))
	}
	dctx, cancel := context.WithTimeout(ctx, holderDial)
	defer cancel()
	sb.hc, err = dialHolder(dctx, filepath.Join(dir, holderSock))
	if err != nil {
		return fail(fmt.Errorf("the holder in standby container %s did not answer (%w); is the engine on another host?", name, err))
	}
	b.mu.Lock()
	if b.standbys == nil {
		b.standbys = map[string]*standby{}
	}
	prev := b.standbys[p.Name+"/"+svc.Name]
	b.standbys[p.Name+"/"+svc.Name] = sb
	b.mu.Unlock()
	if prev != nil {
		b.discard(prev)
	}
	select {
	case <-ci.done: // cur ended meanwhile: nothing to stand by for
		b.dropStandbyFor(ci)
		return errors.New("the instance it was for has stopped")
	default:
	}
	fmt.Fprintf(spec.Status, "standby container %s is ready for the next reload\n", name)
	return nil
}

// noStandby says why spec's service cannot have a standby, "" when it can.
func (b *Backend) noStandby(ctx context.Context, spec runner.Spec, cur *Instance) string {
	p, svc := spec.Project, spec.Service
	if why := notBeside(p, svc); why != "" {
		return why
	}
	if n := replicas(svc); n != 1 {
		return fmt.Sprintf("service %q runs %d replicas", svc.Name, n)
	}
	if !strings.HasPrefix(b.host, "unix://") {
		return "the engine is not on this host (" + b.host + "): a standby needs a directory both can see"
	}
	if cur.ambassador() == nil && !cur.shared {
		// Its containers answer to its names themselves. The supervisor
		// gives an ambassador to every service another one names, so
		// none calls this one by name, unless one is refused or the file
		// says never: then a caller by name could reach the standby.
		switch {
		case spec.Ambassador != nil:
			return fmt.Sprintf("service %q runs without its ambassador, and a waiting container would answer to its name", svc.Name)
		case svc.X.Ambassador == "never":
			return fmt.Sprintf("service %q has x-devstack.ambassador: never, and a waiting container would answer to its name", svc.Name)
		}
	}
	if len(svc.Compose.Expose) > 0 {
		return fmt.Sprintf("service %q exposes ports (expose:) that callers reach straight, and a waiting container would answer", svc.Name)
	}
	if svc.Compose.ReadOnly {
		return fmt.Sprintf("service %q has a read-only root filesystem, where new files cannot be put", svc.Name)
	}
	return ""
}

// takeStandby hands over the service's standby when it was made for a
// container like spec's, or drops it; nil when there is none.
func (b *Backend) takeStandby(spec runner.Spec) *standby {
	k := spec.Project.Name + "/" + spec.Service.Name
	b.mu.Lock()
	sb := b.standbys[k]
	delete(b.standbys, k)
	b.mu.Unlock()
	if sb == nil {
		return nil
	}
	key, err := standbyKey(spec)
	if err != nil || key != sb.key {
		fmt.Fprintf(spec.Status, "starting a new container: the service's configuration changed since standby %s was made\n", sb.name)
		b.discard(sb)
		return nil
	}
	return sb
}

// dropStandbyFor removes the standby that stood by for inst, if any.
func (b *Backend) dropStandbyFor(inst *Instance) {
	b.mu.Lock()
	var drop []*standby
	for k, sb := range b.standbys {
		if sb.cur == inst {
			drop = append(drop, sb)
			delete(b.standbys, k)
		}
	}
	b.mu.Unlock()
	for _, sb := range drop {
		b.discard(sb)
	}
}

// discard removes a standby that will not serve: its container, then
// its directory.
func (b *Backend) discard(sb *standby) {
	if sb.hc != nil {
		_ = sb.hc.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := b.removeContainer(ctx, sb.id); err == nil {
		_ = os.RemoveAll(sb.dir)
	}
}

// makeStandbyDir makes a standby's directory in parent. The directory
// above the projects' is this user's alone (0700, checked to be a
// directory of ours, not a link someone left in /tmp): through the
// holder's socket, whoever reaches it runs commands in the container.
// The standby's own is open to all (0777), since the container's user,
// whoever it is, must make its socket there; it is reached only through
// the first.
func makeStandbyDir(parent string) (string, error) {
	top := filepath.Dir(parent)
	if err := os.Mkdir(top, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	fi, err := os.Lstat(top)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() {
		return "", fmt.Errorf("%s is not a directory of this user's; remove it", top)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(top, 0o700); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(parent, randomHex(4))
	if err := os.MkdirAll(filepath.Join(dir, "f"), 0o700); err != nil {
		return "", err
	}
	// Not the umask's: the container's user reads the staged files.
	if err := os.Chmod(filepath.Join(dir, "f"), 0o755); err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o777)
}

// standbyDir is where the project's standbys keep their files on this
// host; Down removes it. The project is hashed to keep the holder's
// socket path short.
func (b *Backend) standbyDir(proj string) string {
	sum := sha256.Sum256([]byte(proj))
	return filepath.Join(os.TempDir(), "devstack-"+strconv.Itoa(os.Getuid())+"-sb", hex.EncodeToString(sum[:6]))
}

// activate starts the new code in sb for spec: the files that changed
// between sb's image and imageID (the new build) and those synced into
// the service since that build are staged and put in place, and the
// holder starts the service. It returns why it could not, having done
// nothing to sb, or the error of a start that failed (sb is then spoilt).
func (b *Backend) activate(ctx context.Context, sb *standby, spec runner.Spec, imageID string) (why string, err error) {
	var place []holder.Place
	if imageID != sb.imageID {
		changes, why := b.imageChanges(ctx, sb.imageID, imageID)
		if why != "" {
			return why, nil
		}
		for _, c := range changes {
			if m := underMount(spec.Service, c.Dst); m != "" {
				return fmt.Sprintf("%s changed, and %s is mounted over it", c.Dst, m), nil
			}
		}
		for k, c := range changes {
			src := filepath.Join(sb.dir, "f", strconv.Itoa(k))
			if err := stageFile(c.From, src, c.Mode, &c.Sum); err != nil {
				return err.Error(), nil
			}
			place = append(place, holder.Place{Dst: c.Dst, Src: path.Join(standbyStage, "f", strconv.Itoa(k)), Mode: c.Mode, Link: c.Size > linkAbove})
		}
	}
	for k, f := range spec.Synced {
		if f.Removed {
			return "a file synced into the service was removed since its build", nil
		}
		if m := underMount(spec.Service, f.Dst); m != "" {
			return fmt.Sprintf("synced file %s is under mount %s", f.Dst, m), nil
		}
		name := "s" + strconv.Itoa(k)
		fi, err := os.Stat(f.Src)
		if err != nil {
			return err.Error(), nil
		}
		if err := stageFile(f.Src, filepath.Join(sb.dir, "f", name), fi.Mode().Perm(), nil); err != nil {
			return err.Error(), nil
		}
		place = append(place, holder.Place{Dst: path.Clean("/" + strings.TrimPrefix(f.Dst, "/")), Src: path.Join(standbyStage, "f", name), Mode: fi.Mode().Perm(), Link: fi.Size() > linkAbove})
	}
	if _, err := sb.hc.Start(ctx, place, nil); err != nil {
		return "", fmt.Errorf("starting the service in standby container %s: %w", sb.name, err)
	}
	fmt.Fprintf(spec.Status, "started the new code in standby container %s (%d file(s) put in place)\n", sb.name, len(place))
	return "", nil
}

// stageFile copies src to dst with mode (a placed link's target keeps
// it: an executable stays one), checking its content against sum when
// given: a file that changed again since the build is not what the image
// holds.
func stageFile(src, dst string, mode fs.FileMode, sum *[32]byte) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("staging %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err == nil {
		err = out.Chmod(mode.Perm()) // not the umask's
	}
	if err != nil {
		return fmt.Errorf("staging %s: %w", src, err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("staging %s: %w", src, err)
	}
	if sum != nil && [32]byte(h.Sum(nil)) != *sum {
		return fmt.Errorf("%s changed again since the build", src)
	}
	return nil
}

// commandOf is the command a container of cfg runs in an image of img:
// the service's entrypoint and command where it sets them, the image's
// otherwise (an entrypoint set by the service drops the image's CMD).
func commandOf(cfg *container.Config, imgEp, imgCmd []string) []string {
	ep, cmd := []string(cfg.Entrypoint), []string(cfg.Cmd)
	if len(ep) == 0 {
		ep = imgEp
		if len(cmd) == 0 {
			cmd = imgCmd
		}
	}
	return append(slices.Clone(ep), cmd...)
}

// healthOf is the healthcheck a container of cfg runs: its own, else
// its image's; nil when none or disabled.
func healthOf(own, img *container.HealthConfig) *container.HealthConfig {
	hc := own
	if hc == nil {
		hc = img
	}
	if hc == nil || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		return nil
	}
	return hc
}

// holderPath is where a file of the devstack executable's root (the
// executable, its loader, its libraries) is mounted in a standby.
func holderPath(f rootFile) string {
	if f.path == ambassadorBin {
		return standbyRoot + "/bin/devstack"
	}
	return standbyRoot + "/lib/" + path.Base(f.path)
}

// holderArgv is a standby's entrypoint: the holder, through its loader
// when the executable is dynamically linked (the image's own loader and
// libraries, if any, are not the host's).
func holderArgv(files []rootFile, argv []string) []string {
	out := []string{}
	for _, f := range files[1:] {
		if strings.Contains(path.Base(f.path), "ld-") {
			out = append(out, holderPath(f), "--library-path", standbyRoot+"/lib")
			break
		}
	}
	out = append(out, standbyRoot+"/bin/devstack", "holder", "--socket", path.Join(standbyStage, holderSock), "--")
	return append(out, argv...)
}

// holderFiles are the files of the devstack executable a standby mounts
// (see rootfsFor), found once.
func (b *Backend) holderFiles(ctx context.Context) ([]rootFile, error) {
	b.ambMu.Lock()
	defer b.ambMu.Unlock()
	if b.holderErr != nil {
		return nil, b.holderErr
	}
	if b.holder != nil {
		return b.holder, nil
	}
	_, files, err := b.devstackRootfs(ctx)
	if errors.Is(err, errAmbassadorUnsupported) {
		b.holderErr = err
	}
	if err != nil {
		return nil, err
	}
	b.holder = files
	return files, nil
}

// dialHolder connects to a new holder's socket, waiting for it to listen.
func dialHolder(ctx context.Context, sock string) (*holder.Client, error) {
	wait := time.Millisecond
	for {
		c, err := holder.Dial(ctx, sock)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !isRefused(err) {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

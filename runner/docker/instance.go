package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/docker/holder"
)

// logDrain bounds how long Wait waits, after the last container exited,
// for its final log lines: a log stream that does not end (a remote
// logging driver) must not hold up the runner.
const logDrain = 2 * time.Second

// opTimeout bounds the engine calls made after the caller's context is
// gone (kill, remove), so that a dead engine cannot hang a stop.
const opTimeout = 30 * time.Second

// replica is one container of an Instance.
type replica struct {
	id, name string
	num      int
	adopted  bool // found running with the same config: not started by us
	held     bool // a standby that serves now: started already (standby.go)
}

// Instance is one start of a service: its N replica containers, followed
// together. It ends when the last of them has exited.
type Instance struct {
	b       *Backend
	spec    runner.Spec
	reps    []*replica
	ambMu   sync.Mutex
	amb     *replica // the service's ambassador (ambassador.go), if any; under ambMu
	shared  bool     // a shared ambassador of the project answers to its names (shared.go)
	tracked bool     // the service declares a healthcheck: report it
	tty     bool
	prefix  bool // prefix log lines with the replica number

	out, errOut io.Writer // spec.Stdout/Stderr, serialised across replicas

	// ctx lives as long as the containers: it ends the log and event
	// streams once all have exited. It does not derive from Start's ctx,
	// which only covers starting.
	ctx    context.Context
	cancel context.CancelFunc
	logs   sync.WaitGroup

	health chan runner.Health
	done   chan struct{}
	exit   runner.Exit

	// holder runs the service in a standby that took a reload over
	// (standby.go): its healthcheck runs there; stage is the host
	// directory the container's placed files link into, removed with it.
	holderMu sync.Mutex
	holder   *holder.Client
	stage    string
}

func newInstance(b *Backend, spec runner.Spec, pl *plan, n int) *Instance {
	ctx, cancel := context.WithCancel(context.Background())
	i := &Instance{
		b: b, spec: spec, ctx: ctx, cancel: cancel,
		tracked: spec.Service.Healthcheck() != nil,
		tty:     pl.config.Tty,
		health:  make(chan runner.Health, 4),
		done:    make(chan struct{}),
	}
	var mu sync.Mutex
	i.out, i.errOut = &lockedWriter{mu: &mu, w: spec.Stdout}, &lockedWriter{mu: &mu, w: spec.Stderr}
	// Several containers share one log: say which line is whose.
	i.prefix = n > 1
	return i
}

// ID implements runner.Instance: the short container id, or ids.
func (i *Instance) ID() string {
	ids := make([]string, len(i.reps))
	for k, r := range i.reps {
		ids[k] = shortID(r.id)
	}
	return strings.Join(ids, ",")
}

// Containers are the names of the instance's containers, by replica, as
// they were created (a reload's replacement takes its name over later).
func (i *Instance) Containers() []string {
	names := make([]string, len(i.reps))
	for k, r := range i.reps {
		names[k] = r.name
	}
	return names
}

// containerIDs are the ids of the instance's containers, by replica.
func (i *Instance) containerIDs() []string {
	ids := make([]string, len(i.reps))
	for k, r := range i.reps {
		ids[k] = r.id
	}
	return ids
}

// Adopted reports whether every container was found running and kept.
func (i *Instance) Adopted() bool {
	for _, r := range i.reps {
		if !r.adopted {
			return false
		}
	}
	return true
}

// Health implements runner.HealthReporter. Verdicts come from the engine's
// health_status events; the channel closes when the instance exits.
func (i *Instance) Health() <-chan runner.Health { return i.health }

// start starts the containers not adopted and follows them all. The event
// subscription comes before the start so that no verdict is missed.
func (i *Instance) start(ctx context.Context) error {
	var events client.EventsResult
	if i.tracked {
		f := make(client.Filters).Add("type", "container").Add("event", "health_status")
		for _, r := range i.reps {
			f.Add("container", r.id)
		}
		events = i.b.cli.Events(i.ctx, client.EventsListOptions{Filters: f})
	}
	for _, r := range i.reps {
		if r.adopted || r.held {
			continue
		}
		if _, err := i.b.cli.ContainerStart(ctx, r.id, client.ContainerStartOptions{}); err != nil {
			return fmt.Errorf("starting container %s: %w", r.name, err)
		}
	}
	initial := map[string]container.HealthStatus{}
	for _, r := range i.reps {
		initial[r.id] = container.Starting
		if r.adopted && i.tracked {
			if res, err := i.b.cli.ContainerInspect(ctx, r.id, client.ContainerInspectOptions{}); err == nil &&
				res.Container.State != nil && res.Container.State.Health != nil {
				initial[r.id] = res.Container.State.Health.Status
			}
		}
	}
	for _, r := range i.reps {
		i.logs.Add(1)
		go i.follow(r)
	}
	if i.tracked {
		paced := make(chan verdict)
		if hc := i.spec.Service.Healthcheck(); i.b.pacesHealth(hc) {
			for _, r := range i.reps {
				if !r.adopted {
					go i.paceHealth(r, hc, paced)
				}
			}
		}
		go i.followHealth(events, initial, paced)
	} else {
		go func() { <-i.done; close(i.health) }()
	}
	go i.watch()
	return nil
}

// abort removes the containers of a failed start.
func (i *Instance) abort() {
	i.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, r := range i.reps {
		if !r.adopted {
			_ = i.b.removeContainer(ctx, r.id)
		}
	}
	if i.stage != "" {
		_ = os.RemoveAll(i.stage)
	}
	if amb := i.ambassador(); amb != nil && !amb.adopted {
		_ = i.b.removeContainer(ctx, amb.id)
	}
}

// ambassador is the instance's ambassador, nil when it has none.
func (i *Instance) ambassador() *replica {
	i.ambMu.Lock()
	defer i.ambMu.Unlock()
	return i.amb
}

func (i *Instance) setAmbassador(r *replica) {
	i.ambMu.Lock()
	i.amb = r
	i.ambMu.Unlock()
}

// takeAmbassador hands the instance's ambassador over to its
// replacement: the instance no longer removes it when it stops.
func (i *Instance) takeAmbassador() *replica {
	i.ambMu.Lock()
	defer i.ambMu.Unlock()
	amb := i.amb
	i.amb = nil
	return amb
}

// follow copies a container's output to the service's log until the
// container stops. An adopted container's past output was shown by the
// devstack that started it, so only new lines are followed.
func (i *Instance) follow(r *replica) {
	defer i.logs.Done()
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true}
	if r.adopted {
		opts.Tail = "0"
	}
	rc, err := i.b.cli.ContainerLogs(i.ctx, r.id, opts)
	if err != nil {
		if i.ctx.Err() == nil {
			fmt.Fprintf(i.spec.Status, "following logs of %s: %v\n", r.name, err)
		}
		return
	}
	defer rc.Close()
	out, errOut := i.out, i.errOut
	if i.prefix {
		p := fmt.Appendf(nil, "[%d] ", r.num)
		ro, re := &replicaWriter{w: out, prefix: p}, &replicaWriter{w: errOut, prefix: p}
		defer ro.flush()
		defer re.flush()
		out, errOut = ro, re
	}
	if i.tty { // a TTY merges the streams; there are no frames to split
		_, err = io.Copy(out, rc)
	} else {
		_, err = stdcopy.StdCopy(out, errOut, rc)
	}
	if err != nil && i.ctx.Err() == nil {
		fmt.Fprintf(i.spec.Status, "following logs of %s: %v\n", r.name, err)
	}
}

// watch waits for every container to exit, then ends the instance. Exit
// is the first non-zero exit, else the last exit.
func (i *Instance) watch() {
	var (
		mu    sync.Mutex
		first *runner.Exit
		last  runner.Exit
		wg    sync.WaitGroup
	)
	for _, r := range i.reps {
		wg.Go(func() {
			e := i.waitOne(r)
			mu.Lock()
			defer mu.Unlock()
			if first == nil && !e.Success() {
				first = &e
			}
			last = e
		})
	}
	wg.Wait()
	logsDone := make(chan struct{})
	go func() { i.logs.Wait(); close(logsDone) }()
	t := time.NewTimer(logDrain)
	select {
	case <-logsDone:
	case <-t.C:
	}
	t.Stop()
	i.cancel()
	if first != nil {
		last = *first
	}
	i.exit = last
	close(i.done)
}

// waitOne waits until the container is not running. not-running (not
// next-exit) also answers for a container that exited before the call.
func (i *Instance) waitOne(r *replica) runner.Exit {
	res := i.b.cli.ContainerWait(i.ctx, r.id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case w := <-res.Result:
		e := runner.Exit{Code: int(w.StatusCode), At: time.Now()}
		if w.Error != nil && w.Error.Message != "" {
			e.Err = fmt.Errorf("container %s: %s", r.name, w.Error.Message)
		}
		if e.Code == 137 {
			e.OOM, e.MemLimit = i.oomKilled(r)
		}
		return e
	case err := <-res.Error:
		return runner.Exit{Code: -1, Err: fmt.Errorf("waiting for container %s: %w", r.name, err), At: time.Now()}
	}
}

// Wait implements runner.Instance.
func (i *Instance) Wait() runner.Exit {
	<-i.done
	return i.exit
}

// Stop implements runner.Instance: the engine sends sig and kills after
// grace; cancelling ctx kills at once. The containers are then removed,
// with their anonymous volumes, so that a stopped stack leaves nothing.
// (Engines before API 1.42 ignore sig and send the container's
// stop_signal, which is what the runner passes anyway.)
func (i *Instance) Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error {
	ended, err := i.halt(ctx, sig, grace)
	ended(ctx)
	return errors.Join(err, i.remove(ctx))
}

// Halt implements runner.Halter: it stops the containers as Stop does,
// and returns once each has died (the engine's die event), not once the
// engine has also torn down its network, which takes it longer than the
// exit did. remove waits for that, then removes the containers and the
// ambassador. A container that has already exited is not waited on.
func (i *Instance) Halt(ctx context.Context, sig syscall.Signal, grace time.Duration) (remove func(context.Context) error, err error) {
	ended, err := i.halt(ctx, sig, grace)
	return func(ctx context.Context) error {
		ended(ctx)
		return i.removeAll(ctx)
	}, err
}

// halt stops the containers and returns once each has died; ended waits
// for the instance's end (killing at once when its ctx ends).
func (i *Instance) halt(ctx context.Context, sig syscall.Signal, grace time.Duration) (ended func(context.Context), err error) {
	// What stood by to take over from it will not.
	i.b.dropStandbyFor(i)
	select {
	case <-i.done:
		return func(context.Context) {}, nil
	default:
	}
	died := i.dying()
	secs := int(math.Ceil(grace.Seconds()))
	// The stop calls outlive Halt: cancelling one would have the engine
	// kill the container before its grace period is out.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace+opTimeout)
	errs := make(chan error, len(i.reps))
	for _, r := range i.reps {
		go func() {
			_, err := i.b.cli.ContainerStop(stopCtx, r.id, client.ContainerStopOptions{Signal: unix.SignalName(sig), Timeout: &secs})
			if err != nil {
				err = fmt.Errorf("stopping container %s: %w", r.name, err)
			}
			errs <- err
		}()
	}
	var stopErr error
	select {
	case <-died:
	case <-ctx.Done():
		i.kill()
		<-died
	case err := <-errs:
		// An engine that failed to stop one container: kill them all
		// rather than wait on containers nobody is stopping.
		if err != nil {
			stopErr = err
			i.kill()
		}
		<-died
	}
	return func(ctx context.Context) {
		defer cancel()
		select {
		case <-i.done:
		case <-ctx.Done():
			i.kill()
			<-i.done
		}
	}, stopErr
}

// dying is closed once every replica has died, by the engine's die
// events, or the instance has ended (which also covers a replica that
// died before the events were followed).
func (i *Instance) dying() <-chan struct{} {
	out := make(chan struct{})
	ctx, cancel := context.WithCancel(i.ctx)
	f := make(client.Filters).Add("type", "container").Add("event", "die")
	left := map[string]bool{}
	for _, r := range i.reps {
		f.Add("container", r.id)
		left[r.id] = true
	}
	ev := i.b.cli.Events(ctx, client.EventsListOptions{Filters: f})
	go func() {
		defer close(out)
		defer cancel()
		for len(left) > 0 {
			select {
			case m := <-ev.Messages:
				delete(left, m.Actor.ID)
			case <-ev.Err: // the stream broke: the instance's end tells
				<-i.done
				return
			case <-i.done:
				return
			}
		}
	}()
	return out
}

func (i *Instance) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, r := range i.reps {
		_, _ = i.b.cli.ContainerKill(ctx, r.id, client.ContainerKillOptions{Signal: "SIGKILL"})
	}
}

// remove removes the containers, then the ambassador: a caller by name
// meanwhile still reaches the proxy, which says the service is gone.
func (i *Instance) remove(ctx context.Context) error {
	return errors.Join(i.removeReplicas(ctx, false), i.removeAmbassador(ctx))
}

// removeAll removes the containers and the ambassador at once: Halt's
// removal, when the service has ended and nobody is left to call it.
func (i *Instance) removeAll(ctx context.Context) error {
	return i.removeReplicas(ctx, true)
}

// removeReplicas removes the replicas in parallel, and the ambassador
// beside them when amb is set.
func (i *Instance) removeReplicas(ctx context.Context, amb bool) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	errs := make([]error, len(i.reps)+1)
	var wg sync.WaitGroup
	for k, r := range i.reps {
		wg.Go(func() { errs[k] = i.b.removeContainer(rctx, r.id) })
	}
	if amb {
		wg.Go(func() { errs[len(i.reps)] = i.removeAmbassador(rctx) })
	}
	wg.Wait()
	i.holderMu.Lock()
	if i.holder != nil {
		_ = i.holder.Close()
	}
	i.holderMu.Unlock()
	if i.stage != "" && errs[0] == nil {
		_ = os.RemoveAll(i.stage)
	}
	return errors.Join(errs...)
}

func (i *Instance) removeAmbassador(ctx context.Context) error {
	amb := i.ambassador()
	if amb == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	return i.b.removeContainer(rctx, amb.id)
}

// followHealth turns health_status events into the instance's verdict:
// unhealthy when any replica is, healthy when all are, else starting.
// paced brings the first success of a replica's own probes (pace.go),
// which counts until the engine says otherwise.
func (i *Instance) followHealth(ev client.EventsResult, status map[string]container.HealthStatus, paced <-chan verdict) {
	defer close(i.health)
	last := runner.HealthNone
	send := func() {
		h := aggregate(status)
		if h == last {
			return
		}
		select {
		case i.health <- h:
			last = h
		case <-i.done:
		}
	}
	send()
	for {
		select {
		case m, ok := <-ev.Messages:
			if !ok {
				return
			}
			action := string(m.Action)
			if _, v, ok := strings.Cut(action, ": "); ok {
				status[m.Actor.ID] = container.HealthStatus(strings.TrimSpace(v))
			}
			send()
		case v := <-paced:
			if status[v.id] == container.Starting {
				status[v.id] = v.status
			}
			send()
		case <-ev.Err: // the stream ended: instance exit or engine gone
			return
		case <-i.done:
			return
		}
	}
}

func aggregate(status map[string]container.HealthStatus) runner.Health {
	healthy := 0
	for _, s := range status {
		switch s {
		case container.Unhealthy:
			return runner.HealthUnhealthy
		case container.Healthy:
			healthy++
		}
	}
	if healthy == len(status) {
		return runner.HealthHealthy
	}
	return runner.HealthStarting
}

// lockedWriter serialises writes of several replicas' log streams.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// replicaWriter puts "[n] " before each whole line of replica n, so that
// interleaved replicas stay readable.
type replicaWriter struct {
	w       io.Writer
	prefix  []byte
	partial []byte
}

func (r *replicaWriter) Write(b []byte) (int, error) {
	r.partial = append(r.partial, b...)
	for {
		nl := bytes.IndexByte(r.partial, '\n')
		if nl < 0 {
			return len(b), nil
		}
		line := append(append([]byte{}, r.prefix...), r.partial[:nl+1]...)
		r.partial = r.partial[nl+1:]
		if _, err := r.w.Write(line); err != nil {
			return len(b), err
		}
	}
}

func (r *replicaWriter) flush() {
	if len(r.partial) > 0 {
		_, _ = r.w.Write(append(append(append([]byte{}, r.prefix...), r.partial...), '\n'))
		r.partial = nil
	}
}

// oomKilled says whether the kernel's OOM killer ended r's container (a
// SIGKILL, exit code 137), and the memory limit it hit. The engine learns
// of the OOM kill from its own event, which may come a moment after the
// exit: it is asked a few times over half a second (an exit path, not a
// request's).
func (i *Instance) oomKilled(r *replica) (bool, int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(i.ctx), oomWait)
	defer cancel()
	tick := time.NewTicker(oomWait / 10)
	defer tick.Stop()
	for {
		res, err := i.b.cli.ContainerInspect(ctx, r.id, client.ContainerInspectOptions{})
		if err == nil && res.Container.State != nil && res.Container.State.OOMKilled {
			var limit int64
			if res.Container.HostConfig != nil {
				limit = res.Container.HostConfig.Memory
			}
			return true, limit
		}
		select {
		case <-ctx.Done():
			return false, 0
		case <-tick.C:
		}
	}
}

// oomWait bounds how long an exit with SIGKILL waits for the engine to
// say whether the OOM killer sent it.
const oomWait = 500 * time.Millisecond

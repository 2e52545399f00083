package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/moby/moby/api/types/container"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
)

// ExecOptions is a command to run in a running container, as
// `docker exec -i` runs it (no terminal).
type ExecOptions struct {
	Cmd     []string
	Env     []string // added to the container's
	Workdir string   // default: the container's
	User    string   // default: the container's
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// Exec runs o.Cmd in container id through the Engine's exec API: stdin is
// copied in until EOF, stdout and stderr out. It returns the command's
// exit code.
func (b *Backend) Exec(ctx context.Context, id string, o ExecOptions) (int, error) {
	created, err := b.cli.ExecCreate(ctx, id, client.ExecCreateOptions{
		Cmd: o.Cmd, Env: o.Env, WorkingDir: o.Workdir, User: o.User,
		AttachStdin: o.Stdin != nil, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return 0, fmt.Errorf("creating the exec in container %s: %w", short(id), err)
	}
	att, err := b.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, fmt.Errorf("starting the exec in container %s: %w", short(id), err)
	}
	defer att.Close()
	if o.Stdin != nil {
		go func() {
			_, _ = io.Copy(att.Conn, o.Stdin)
			_ = att.CloseWrite()
		}()
	}
	if _, err := stdcopy.StdCopy(o.Stdout, o.Stderr, att.Reader); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("reading the exec's output: %w", err)
	}
	res, err := b.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading the exec's exit code: %w", err)
	}
	return res.ExitCode, nil
}

var _ runner.Commander = (*Instance)(nil)

// RunCommand implements runner.Commander: c runs in each of the
// instance's containers through the engine's exec (no shell, unless c
// names one); the first non-zero exit code ends it.
func (i *Instance) RunCommand(ctx context.Context, c runner.Command, stdout, stderr io.Writer) (int, error) {
	for _, id := range i.containerIDs() {
		code, err := i.b.Exec(ctx, id, ExecOptions{Cmd: c.Argv, Env: c.Env, Workdir: c.Dir, User: c.User, Stdout: stdout, Stderr: stderr})
		if err != nil || code != 0 {
			return code, err
		}
	}
	return 0, nil
}

// Top lists the processes running in container id, as `docker top`:
// the column titles and one row per process.
func (b *Backend) Top(ctx context.Context, id string) ([]string, [][]string, error) {
	res, err := b.cli.ContainerTop(ctx, id, client.ContainerTopOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("listing the processes of container %s: %w", short(id), err)
	}
	return res.Titles, res.Processes, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// RunOnce runs a one-off container of spec's service with cmd in place of
// its command, as `docker compose run --rm` does: the service's image
// (built or pulled as up would), environment, mounts and networks, no
// published ports, removed when it exits. It returns the exit code.
func (b *Backend) RunOnce(ctx context.Context, spec runner.Spec, cmd []string, stdin io.Reader) (int, error) {
	p, svc := spec.Project, spec.Service
	imageID, err := b.ensureImage(ctx, spec)
	if errors.Is(err, ErrImageUnavailable) && svc.Compose.Build != nil {
		// Built only when missing, as compose run does; the build's
		// output is status, not the command's.
		quiet := spec
		quiet.Stdout = spec.Status
		if err := b.Build(ctx, quiet); err != nil {
			return 0, err
		}
		imageID, err = b.ensureImage(ctx, spec)
	}
	if err != nil {
		return 0, err
	}
	if err := b.ensureNetworks(ctx, p, svc); err != nil {
		return 0, err
	}
	if err := b.ensureVolumes(ctx, p, svc); err != nil {
		return 0, err
	}
	noPorts := *svc
	noPorts.Ports = nil
	spec.Service, spec.Ambassador = &noPorts, nil
	pl, err := planFor(spec, imageID)
	if err != nil {
		return 0, err
	}
	if len(cmd) > 0 {
		pl.config.Cmd = cmd
	}
	pl.config.Labels[composeOneoff] = "True"
	pl.config.OpenStdin, pl.config.AttachStdin, pl.config.StdinOnce = stdin != nil, stdin != nil, stdin != nil
	pl.config.AttachStdout, pl.config.AttachStderr = true, true
	pl.host.AutoRemove = false // removed below, after its exit code is read
	name := fmt.Sprintf("%s-%s-run-%s", p.Name, svc.Name, runSuffix())
	id, err := b.create(ctx, pl, name, 0)
	if err != nil {
		return 0, err
	}
	defer b.removeContainer(context.WithoutCancel(ctx), id)
	att, err := b.cli.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdin: stdin != nil, Stdout: true, Stderr: true})
	if err != nil {
		return 0, fmt.Errorf("attaching to %s: %w", name, err)
	}
	defer att.Close()
	wait := b.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := b.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return 0, fmt.Errorf("starting %s: %w", name, err)
	}
	if stdin != nil {
		go func() {
			_, _ = io.Copy(att.Conn, stdin)
			_ = att.CloseWrite()
		}()
	}
	if _, err := stdcopy.StdCopy(spec.Stdout, spec.Stderr, att.Reader); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("reading the output of %s: %w", name, err)
	}
	select {
	case res := <-wait.Result:
		return int(res.StatusCode), nil
	case err := <-wait.Error:
		return 0, fmt.Errorf("waiting for %s: %w", name, err)
	}
}

func runSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

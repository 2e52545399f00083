package docker

import (
	"errors"
	"fmt"
)

// EngineError says that the Docker Engine did not answer at Host.
type EngineError struct {
	// Host is the engine address that was tried (unix:///var/run/docker.sock,
	// tcp://host:2376, ...).
	Host string
	Err  error
}

func (e *EngineError) Error() string {
	return fmt.Sprintf("docker engine at %s does not answer: %v; start Docker, point DOCKER_HOST or the docker context at a running engine, or run the services as processes (x-devstack.backend: process)", e.Host, e.Err)
}

func (e *EngineError) Unwrap() error { return e.Err }

// ErrBuildFailed is wrapped by the errors Build returns when the engine
// reported a failed build (as opposed to not answering).
var ErrBuildFailed = errors.New("image build failed")

// ErrImageUnavailable is wrapped when an image is neither local nor pullable.
var ErrImageUnavailable = errors.New("image not available")

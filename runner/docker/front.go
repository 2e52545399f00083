package docker

import (
	"context"
	"fmt"

	"github.com/devstack/devstack/runner"
)

var _ runner.Fronter = (*Backend)(nil)

// Front implements runner.Fronter: it makes a service that runs outside
// the engine (a process on the host) answer to its name on the project
// networks it would join, as a container service does, so that containers
// call it the Compose way (http://inventory:8080). It is an ambassador
// like a container service's (ambassador.go), with no container behind
// it: each port in spec.Ambassador is relayed to the proxy, starting with
// a PROXY line that names the calling container, so every such call is a
// traced hop with its caller. A running ambassador with the same plan is
// kept; Down removes it with the project's other containers.
func (b *Backend) Front(ctx context.Context, spec runner.Spec) error {
	if !wantsAmbassador(spec) {
		return nil
	}
	if err := b.ensureNetworks(ctx, spec.Project, spec.Service); err != nil {
		return err
	}
	ap, err := b.planAmbassador(ctx, spec, "")
	if err != nil {
		return fmt.Errorf("planning the ambassador of service %q: %w", spec.Service.Name, err)
	}
	// An instance with no replicas: it follows the ambassador's output
	// into the service's status log, as a container service's does.
	i := newInstance(b, spec, ap.pl, 0)
	if err := i.startAmbassador(ctx, ap); err != nil {
		i.cancel()
		return err
	}
	return nil
}

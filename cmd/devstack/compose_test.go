package main

import (
	"strings"
	"testing"
)

// Every Compose key the service's backend does not honour is named, once,
// with what happens instead; honoured keys are not.
func TestConfigWarnsAboutEveryKeyTheBackendDoesNotHonour(t *testing.T) {
	dir := writeProject(t, `services:
  api:
    image: example/api
    volumes: [./data:/data]
    user: "1000"
    environment: {A: "1"}
    x-devstack: {run: ./api, backend: process}
  db:
    image: postgres
    deploy:
      placement: {constraints: [node.role==manager]}
`)
	c := newCLI(t, dir)
	r := c.must("config", "--services")
	for _, want := range []string{
		`service "api" runs as a process, which does not honour: `,
		`image (not used: the service runs x-devstack.run as a process)`,
		`volumes (not mounted: the process sees the host's files)`,
		`user (not applied: the process runs as the user who ran devstack)`,
		`service "db" runs as a container, which does not honour: deploy.placement (`,
	} {
		if strings.Count(r.stderr, want) != 1 {
			t.Errorf("config's warnings name %q %d times, want once:\n%s", want, strings.Count(r.stderr, want), r.stderr)
		}
	}
	if strings.Contains(r.stderr, "environment") {
		t.Errorf("config warned about environment, which a process honours:\n%s", r.stderr)
	}
}

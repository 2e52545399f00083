package supervisor

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/devstack/devstack/runner/project"
)

// Each container service's ambassador must relay every port the proxy
// fronts, by target port, to the proxy's route on the gateway, and only
// those; without a gateway (no containers) there are none.
func TestAmbassadors(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  orders:
    image: orders
    ports: ["18082:8080", "18090:9090", "7000", "5353:53/udp"]
  db:
    image: db
    expose: ["5432"]
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "amb"})
	if err != nil {
		t.Fatal(err)
	}
	docker := func(*project.Service) string { return "docker" }
	private, _, err := plan(p, docker, "172.17.0.1")
	if err != nil {
		t.Fatal(err)
	}
	got := ambassadors(p, private, "172.17.0.1")
	if len(got) != 1 || got["orders"] == nil {
		t.Fatalf("ambassadors = %v; want one, for orders", got)
	}
	want := map[uint16]string{8080: "172.17.0.1:18082", 9090: "172.17.0.1:18090"}
	if !maps.Equal(got["orders"].Relay, want) {
		t.Errorf("orders relays %v; want %v", got["orders"].Relay, want)
	}
	if got := ambassadors(p, private, ""); got != nil {
		t.Errorf("ambassadors without a gateway = %v; want none", got)
	}
}

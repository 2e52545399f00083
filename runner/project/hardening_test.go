package project

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What `up` would refuse, Load refuses, at the file and line: so `config`
// says it first, and `up` never says it without them.
func TestLoadRefusesWhatUpWouldWithFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
		ok               bool
	}{
		{"restart sometimes", "services:\n  a:\n    x-devstack: {run: \"true\"}\n    restart: sometimes\n",
			`devstack.yaml:4: service "a": restart "sometimes" is not a restart policy; use no, always, on-failure[:N] or unless-stopped`, false},
		{"restart on-failure:x", "services:\n  a:\n    x-devstack: {run: \"true\"}\n    restart: on-failure:x\n",
			`devstack.yaml:4: service "a": restart "on-failure:x": the retry count must be a whole number`, false},
		{"restart on-failure:3", "services:\n  a:\n    x-devstack: {run: \"true\"}\n    restart: on-failure:3\n", "", true},
		{"service workdir missing", "services:\n  a:\n    x-devstack:\n      run: \"true\"\n      workdir: nowhere\n",
			`devstack.yaml:5: service "a": workdir "nowhere" (`, false},
		{"project workdir missing", "x-devstack:\n  workdir: gone/away\nservices:\n  a:\n    x-devstack: {run: \"true\"}\n",
			`devstack.yaml:2: service "a": workdir "gone/away" (`, false},
		{"workdir is a file", "services:\n  a:\n    x-devstack:\n      run: \"true\"\n      workdir: devstack.yaml\n",
			"is not a directory", false},
		{"workdir exists", "services:\n  a:\n    x-devstack:\n      run: \"true\"\n      workdir: sub\n", "", true},
		{"a docker service's workdir is not the host's", "services:\n  a:\n    image: x\n    x-devstack:\n      backend: docker\n      run: \"true\"\n      workdir: nowhere\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "sub"), 0o700)
			if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(t.Context(), LoadOptions{WorkDir: dir, Name: "p"})
			if tc.ok {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v\nwant an invalid value error containing %q", err, tc.want)
			}
		})
	}
}

// Two services cannot own one host port, with or without the proxy in
// front (port_env): Load refuses the second, naming both places.
func TestLoadRefusesTwoServicesOnOneHostPort(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"port_env", `services:
  a:
    ports: ["8080"]
    x-devstack: {run: "serve", port_env: PORT}
  b:
    ports: ["8080"]
    x-devstack: {run: "serve", port_env: PORT}
`, `devstack.yaml:6: service "b": host port 8080 (tcp) is also declared by service "a" (devstack.yaml:3)`},
		{"published", `services:
  a:
    image: x
    ports: ["9000:80"]
  b:
    x-devstack: {run: "serve"}
    ports: ["127.0.0.1:9000:9000"]
`, `devstack.yaml:7: service "b": host port 9000 (tcp) is also declared by service "a" (devstack.yaml:4)`},
		{"every address", `services:
  a:
    ports: ["0.0.0.0:7000:7000"]
    x-devstack: {run: "serve"}
  b:
    ports: ["127.0.0.2:7000:7000"]
    x-devstack: {run: "serve"}
`, `service "b": host port 7000 (tcp) is also declared by service "a"`},
		{"other address", `services:
  a:
    ports: ["127.0.0.1:7000:7000"]
    x-devstack: {run: "serve"}
  b:
    ports: ["127.0.0.2:7000:7000"]
    x-devstack: {run: "serve"}
`, ""},
		{"udp and tcp", `services:
  a:
    ports: ["5353:5353/udp"]
    x-devstack: {run: "serve"}
  b:
    ports: ["5353:5353"]
    x-devstack: {run: "serve"}
`, ""},
		{"a container's unpublished port", `services:
  a:
    image: x
    ports: ["8080"]
  b:
    ports: ["8080"]
    x-devstack: {run: "serve"}
`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(t.Context(), LoadOptions{WorkDir: dir, Name: "p"})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadPort) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v\nwant a port error containing %q", err, tc.want)
			}
		})
	}
}

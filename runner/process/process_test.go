package process

import (
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// A workdir removed after the file was loaded is named as such, not
// reported as the shell missing ("fork/exec /bin/sh: no such file or
// directory").
func TestStartNamesAMissingWorkdir(t *testing.T) {
	dir := t.TempDir()
	svc := &project.Service{Name: "api"}
	svc.X.Run = project.Command{Args: []string{"true"}}
	svc.X.Workdir = "gone"
	spec := runner.Spec{Project: &project.Project{Name: "p", Dir: dir}, Service: svc, Stdout: io.Discard, Stderr: io.Discard}
	inst, err := (&Backend{}).Start(t.Context(), spec)
	if err == nil {
		inst.Stop(t.Context(), syscall.SIGKILL, 0)
		t.Fatal("a process started in a missing workdir")
	}
	if want := filepath.Join(dir, "gone"); !strings.Contains(err.Error(), "workdir "+want+" is not there") || !strings.Contains(err.Error(), `"api"`) {
		t.Errorf("got %q; want it to name the service and its missing workdir %s", err, want)
	}
}

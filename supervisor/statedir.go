package supervisor

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/devstack/devstack/runner/project"
)

// StateDir is where a project's supervisor keeps its socket, token, pid
// records and logs: $DEVSTACK_STATE_DIR/<project>, else
// $XDG_STATE_HOME/devstack/<project>, else ~/.local/state/devstack/<project>.
// It is keyed by project name, as Compose keys its containers.
func StateDir(project string) string { return filepath.Join(stateRoot(), project) }

// stateRoot is the directory of every project's state dir.
func stateRoot() string {
	if d := os.Getenv("DEVSTACK_STATE_DIR"); d != "" {
		return d
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "devstack")
}

// Source says where a project's state came from: the project files its
// supervisor loaded (absolute), and the bound its span store was opened
// with. The supervisor writes it as it starts, in project.json, and it
// stays after down, with the logs and spans, so that commands run next
// to the files find the state without loading them (see StateFrom).
type Source struct {
	Files    []string `json:"files"`
	MaxSpans int      `json:"max_spans"`
}

func writeSource(dir string, src Source) error {
	b, err := json.MarshalIndent(src, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(Paths{dir}.Project(), b, 0o600)
}

// StateFrom returns the state dir of the one project whose supervisor ran
// the project files files (absolute paths, as project.FilesFor gives
// them), and its Source: found through the state dirs' project.json,
// with no project file loaded, which costs more than a quick command's
// whole answer (see `devstack traces`). It reports false when none
// matches, or when several do (the same files run under two project
// names: only the name tells them apart). Whether its supervisor runs
// now, the caller finds out by dialing it.
func StateFrom(files []string) (string, Source, bool) {
	if len(files) == 0 {
		return "", Source{}, false
	}
	root := stateRoot()
	entries, err := os.ReadDir(root)
	if err != nil {
		return "", Source{}, false
	}
	found, src := "", Source{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		s, ok := SourceOf(dir)
		if !ok || !slices.Equal(s.Files, files) {
			continue
		}
		if found != "" {
			return "", Source{}, false
		}
		found, src = dir, s
	}
	return found, src, found != ""
}

// SourceOf reads the Source a supervisor left in state dir dir; false when
// there is none (no supervisor ran there since project.json came in).
func SourceOf(dir string) (Source, bool) {
	b, err := os.ReadFile(Paths{dir}.Project())
	if err != nil {
		return Source{}, false
	}
	var s Source
	if json.Unmarshal(b, &s) != nil {
		return Source{}, false
	}
	return s, true
}

// Paths of the files in a state dir.
type Paths struct{ Dir string }

func (p Paths) Socket() string  { return filepath.Join(p.Dir, "control.sock") }
func (p Paths) Token() string   { return filepath.Join(p.Dir, "token") }
func (p Paths) Lock() string    { return filepath.Join(p.Dir, "lock") }
func (p Paths) State() string   { return filepath.Join(p.Dir, "state.json") }
func (p Paths) Logs() string    { return filepath.Join(p.Dir, "logs") }
func (p Paths) Spans() string   { return filepath.Join(p.Dir, "spans") }
func (p Paths) SupLog() string  { return filepath.Join(p.Dir, "supervisor.log") }
func (p Paths) Project() string { return filepath.Join(p.Dir, "project.json") } // see Source

// Record is what the supervisor persists about what it started, so that a
// later run can find and stop it after devstack was SIGKILLed.
type Record struct {
	Project    string           `json:"project"`
	RunID      string           `json:"run_id"`
	Supervisor Proc             `json:"supervisor"`
	Instances  map[string]*Proc `json:"instances"`
	// Config is the fingerprint of the file the supervisor runs, so that
	// a later `up` can tell which services changed since.
	Config *project.Fingerprint `json:"config,omitempty"`
}

// SupervisorPID is the pid of the project's running supervisor, from its
// record in dir; false if unknown.
func SupervisorPID(dir string) (int, bool) {
	r, err := readRecord(Paths{dir}.State())
	if err != nil || r.Supervisor.PID <= 0 {
		return 0, false
	}
	return r.Supervisor.PID, true
}

// RunningConfig is the fingerprint of the file that the project's
// running supervisor loaded, from its record in dir; false if unknown.
func RunningConfig(dir string) (project.Fingerprint, bool) {
	r, err := readRecord(Paths{dir}.State())
	if err != nil || r.Config == nil {
		return project.Fingerprint{}, false
	}
	return *r.Config, true
}

// Proc identifies a process across pid reuse: pid plus start time.
type Proc struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	Marker    string `json:"marker,omitempty"`
}

func readRecord(path string) (*Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &r, nil
}

// writeFileAtomic writes through a temp file and rename, so a crash never
// leaves a half-written record.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ReadToken returns the token of a running supervisor.
func ReadToken(dir string) (string, error) {
	b, err := os.ReadFile(Paths{dir}.Token())
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// checkName refuses project names that would escape the state directory.
func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return errors.New("project name " + fmt.Sprintf("%q", name) + " must be lowercase letters, digits, '-' and '_'")
	}
	return nil
}

package project

import (
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/types"
)

// SecretsDir is where a container finds its secrets, as in Compose.
const SecretsDir = "/run/secrets"

// File is a secret or a config that a service reads: the path where a
// container sees it and what it holds.
type File struct {
	// Kind is "secret" or "config"; Name is its top-level key.
	Kind, Name string
	// Target is the absolute path in a container: /run/secrets/<target>
	// for a secret, the target (default /<name>) for a config.
	Target string
	// Mode is the file's mode (default 0444).
	Mode os.FileMode
	// Source is the host file it comes from (file: sources), or "".
	Source string
	// Content is what it holds.
	Content []byte
}

// Files reads the service's secrets and configs from their sources:
// file:, environment: (its value at load) or content:. An external one,
// which only a swarm provides, is an error.
func (s *Service) Files(p *Project) ([]File, error) {
	var out []File
	for _, ref := range s.Compose.Secrets {
		f, err := fileFor("secret", types.FileReferenceConfig(ref), types.FileObjectConfig(p.Compose.Secrets[ref.Source]))
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		out = append(out, f)
	}
	for _, ref := range s.Compose.Configs {
		f, err := fileFor("config", types.FileReferenceConfig(ref), types.FileObjectConfig(p.Compose.Configs[ref.Source]))
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func fileFor(kind string, ref types.FileReferenceConfig, obj types.FileObjectConfig) (File, error) {
	f := File{Kind: kind, Name: ref.Source, Mode: 0o444}
	if ref.Mode != nil {
		f.Mode = os.FileMode(*ref.Mode)
	}
	switch t := ref.Target; {
	case kind == "secret" && t == "":
		f.Target = path.Join(SecretsDir, ref.Source)
	case kind == "secret" && !path.IsAbs(t):
		f.Target = path.Join(SecretsDir, t)
	case t == "":
		f.Target = "/" + ref.Source
	default:
		f.Target = path.Clean(t)
	}
	switch {
	case bool(obj.External):
		return f, fmt.Errorf("%s %q is external, which only a swarm provides; give it file: or environment:", kind, ref.Source)
	case obj.File != "":
		data, err := os.ReadFile(obj.File)
		if err != nil {
			return f, fmt.Errorf("reading %s %q from %s: %w", kind, ref.Source, obj.File, err)
		}
		f.Source, f.Content = filepath.Clean(obj.File), data
	default:
		// environment: and content: sources: compose-go put the value in
		// Content at load.
		f.Content = []byte(obj.Content)
	}
	return f, nil
}

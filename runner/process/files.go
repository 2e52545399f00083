package process

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/devstack/devstack/runner"
)

// SecretsEnv names the directory that holds a process's secrets, the
// way /run/secrets does in a container.
const SecretsEnv = "DEVSTACK_SECRETS_DIR"

// writeFiles gives a process service its secrets and configs: each is
// written (mode 0444 by default, in a 0700 directory of the user's own,
// removed when the process exits) under dir at its container path, so
// /run/secrets/db_password is dir/run/secrets/db_password. The
// environment then says where they are: SecretsEnv names
// dir/run/secrets, and every variable whose value is a file's container
// path (POSTGRES_PASSWORD_FILE=/run/secrets/db_password, the convention
// images follow) gets the host path instead. It returns the environment
// and the directory ("" when the service has none).
func writeFiles(spec runner.Spec) ([]string, string, error) {
	files, err := spec.Service.Files(spec.Project)
	if err != nil || len(files) == 0 {
		return spec.Env, "", err
	}
	base := filepath.Join(os.TempDir(), fmt.Sprintf("devstack-%d", os.Getuid()))
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, "", fmt.Errorf("making the secrets directory: %w", err)
	}
	dir, err := os.MkdirTemp(base, spec.Project.Name+"-"+spec.Service.Name+"-")
	if err != nil {
		return nil, "", fmt.Errorf("making the secrets directory: %w", err)
	}
	where := map[string]string{}
	for _, f := range files {
		host := filepath.Join(dir, filepath.FromSlash(f.Target))
		if err := os.MkdirAll(filepath.Dir(host), 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, "", err
		}
		if err := os.WriteFile(host, f.Content, f.Mode.Perm()); err != nil {
			os.RemoveAll(dir)
			return nil, "", fmt.Errorf("writing %s %q: %w", f.Kind, f.Name, err)
		}
		where[f.Target] = host
	}
	env := make([]string, 0, len(spec.Env)+1)
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		if host, ok := where[v]; ok {
			kv = k + "=" + host
		}
		env = append(env, kv)
	}
	env = append(env, SecretsEnv+"="+filepath.Join(dir, "run", "secrets"))
	return env, dir, nil
}

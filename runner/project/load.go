package project

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/consts"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
)

// defaultFiles are tried in WorkDir, in this order, when no file is given:
// devstack's own name first, then the names docker compose discovers.
var defaultFiles = []string{
	"devstack.yaml", "devstack.yml",
	"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml",
}

// Load reads, interpolates, merges and validates a project the way docker
// compose does for the same flags, then decodes and checks devstack's
// x-devstack extensions. Any problem is returned as an *Error naming the
// file, line, service and key, with the fix.
func Load(ctx context.Context, opts LoadOptions) (*Project, error) {
	workDir, err := absWorkDir(opts.WorkDir)
	if err != nil {
		return nil, err
	}
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	files := absPaths(workDir, opts.Files)
	if len(files) == 0 && !hasVar(env, consts.ComposeFilePath) {
		// As compose does: the project is the nearest directory, this
		// one or a parent, that holds a project file.
		if dir, ok := findProjectDir(workDir); ok {
			workDir = dir
		}
	}

	if opts.Name != "" && loader.NormalizeProjectName(opts.Name) != opts.Name {
		return nil, &Error{Key: "name", Err: ErrInvalid, Msg: fmt.Sprintf(
			"project name %q is not valid; use only lowercase letters, digits, '-' and '_', starting with a letter or digit", opts.Name)}
	}

	// Like compose, the default .env lives in the project directory: the
	// directory of the first -f file, else WorkDir.
	envDir := workDir
	if len(files) > 0 {
		envDir = filepath.Dir(files[0])
	}
	envFiles, err := envFilesFor(workDir, envDir, opts.EnvFiles, env)
	if err != nil {
		return nil, err
	}

	unset := &unsetVars{}
	optFns := []cli.ProjectOptionsFn{cli.WithEnv(env)}
	if len(envFiles) > 0 {
		// Only with an explicit list: cli.WithEnvFiles() with none looks for
		// .env in the process's current directory, not in WorkDir.
		optFns = append(optFns, cli.WithEnvFiles(envFiles...), cli.WithDotEnv)
	}
	optFns = append(optFns,
		cli.WithName(opts.Name),
		cli.WithDefaultProfiles(opts.Profiles...),
		// compose-go's consistency check insists on image/build, which a
		// process-only service lacks; checkConsistency runs it with just
		// that rule relaxed, after checkGraph and buildService gave their
		// own positioned messages for the graph and the healthcheck.
		cli.WithConsistency(false),
		cli.WithLoadOptions(func(o *loader.Options) {
			// LoadConfigFiles runs these options on a bare Options too.
			if o.Interpolate != nil {
				o.Interpolate.Substitute = unset.substitute
			}
		}),
	)
	po, err := cli.NewProjectOptions(nil, optFns...)
	if err != nil {
		return nil, envFileError(workDir, err)
	}

	if len(files) == 0 {
		files, err = discover(workDir, po.Environment)
		if err != nil {
			return nil, err
		}
	}
	po.ConfigPaths = files

	src, err := parseSources(workDir, files, po.Environment)
	if err != nil {
		return nil, err
	}
	if err := src.checkPortSyntax(); err != nil {
		return nil, err
	}

	cp, err := po.LoadProject(ctx)
	if err != nil {
		return nil, src.composeError(err)
	}
	p, err := build(cp, src, opts.Services)
	if err != nil {
		return nil, err
	}
	if err := checkConsistency(ctx, po, cp, src, unset.substitute); err != nil {
		return nil, err
	}
	for _, name := range unset.list() {
		p.Warnings = append(p.Warnings, src.unsetWarning(name))
	}
	return p, nil
}

func absWorkDir(dir string) (string, error) {
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("getting working directory: %w", err)
		}
		return wd, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolving working directory: %w", err)
	}
	return abs, nil
}

// absPaths resolves paths against dir; "-" (stdin) is kept as is.
func absPaths(dir string, paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if p != "-" && !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		out = append(out, p)
	}
	return out
}

// envFilesFor returns the --env-file paths (made absolute against WorkDir),
// or dir/.env when none were given and it exists, unless
// COMPOSE_DISABLE_ENV_FILE says not to (as compose does).
func envFilesFor(workDir, dir string, given, env []string) ([]string, error) {
	if len(given) > 0 {
		files := absPaths(workDir, given)
		for _, f := range files {
			if fi, err := os.Stat(f); err != nil || fi.IsDir() {
				what := "does not exist"
				if err == nil {
					what = "is a directory"
				}
				return nil, &Error{File: displayPath(workDir, f), Err: ErrNoFile,
					Msg: fmt.Sprintf("env file %s; check the --env-file path", what)}
			}
		}
		return files, nil
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, consts.ComposeDisableDefaultEnvFile+"="); ok && v != "" && v != "0" && !strings.EqualFold(v, "false") {
			return nil, nil
		}
	}
	def := filepath.Join(dir, ".env")
	if fi, err := os.Stat(def); err == nil && fi.Mode().IsRegular() {
		return []string{def}, nil
	}
	return nil, nil
}

// envFileError turns compose-go's env file failures (a bad line in .env)
// into an *Error; anything else is wrapped as is.
func envFileError(workDir string, err error) error {
	msg := err.Error()
	if m := regexp.MustCompile(`^failed to read (\S+): (.*)$`).FindStringSubmatch(msg); m != nil {
		e := &Error{File: displayPath(workDir, m[1]), Err: ErrInvalid}
		why := m[2]
		if lm := regexp.MustCompile(`^line (\d+): (.*)$`).FindStringSubmatch(why); lm != nil {
			e.Line, _ = strconv.Atoi(lm[1])
			why = lm[2]
		}
		e.Msg = fmt.Sprintf("cannot parse the env file (%s); write one KEY=VALUE per line", why)
		return e
	}
	return fmt.Errorf("reading env files: %w", err)
}

// discover finds the files to load when no -f was given: COMPOSE_FILE
// first (as compose does), else the first default name present in workDir,
// plus its override file.
func discover(workDir string, env types.Mapping) ([]string, error) {
	if list, ok := env[consts.ComposeFilePath]; ok && list != "" {
		sep := env[consts.ComposePathSeparator]
		if sep == "" {
			sep = string(os.PathListSeparator)
		}
		return absPaths(workDir, strings.Split(list, sep)), nil
	}
	if dir, ok := findProjectDir(workDir); ok {
		workDir = dir
	}
	for _, name := range defaultFiles {
		main := filepath.Join(workDir, name)
		if !isFile(main) {
			continue
		}
		files := []string{main}
		overrides := cli.DefaultOverrideFileNames
		if strings.HasPrefix(name, "devstack.") {
			overrides = []string{"devstack.override.yaml", "devstack.override.yml"}
		}
		for _, o := range overrides {
			if f := filepath.Join(workDir, o); isFile(f) {
				files = append(files, f)
				break
			}
		}
		return files, nil
	}
	return nil, &Error{Err: ErrNoFile, Msg: fmt.Sprintf(
		"no project file in %s or its parents (tried %s); create devstack.yaml there or pass -f <file>",
		workDir, strings.Join(defaultFiles, ", "))}
}

// FilesFor returns the absolute paths of the files Load would read for
// workDir and files, without reading them: files made absolute, or the
// ones discovery finds in workDir. It is a cheap stand-in for Load where
// only the files matter (finding a running project). It sees only the
// process's environment: a COMPOSE_FILE set in .env is Load's to apply.
func FilesFor(workDir string, files []string) ([]string, error) {
	workDir, err := absWorkDir(workDir)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		return absPaths(workDir, files), nil
	}
	env := types.Mapping{}
	for _, k := range []string{consts.ComposeFilePath, consts.ComposePathSeparator} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	return discover(workDir, env)
}

// findProjectDir returns dir, or its nearest parent, that holds one of
// the default project files.
func findProjectDir(dir string) (string, bool) {
	for {
		for _, name := range defaultFiles {
			if isFile(filepath.Join(dir, name)) {
				return dir, true
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == name && v != "" {
			return true
		}
	}
	return false
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

func displayPath(workDir, path string) string {
	return (&sources{workDir: workDir}).display(path)
}

// unsetVars records the variables interpolation found unset, in order, so
// they become Project.Warnings instead of compose-go's logrus warnings on
// stderr. Its substitute replaces compose-go's template.Substitute for this
// load only (no global is touched).
type unsetVars struct {
	mu    sync.Mutex
	names []string
}

func (u *unsetVars) substitute(s string, m template.Mapping) (string, error) {
	return template.SubstituteWithOptions(s, m, template.WithoutLogging, template.WithReplacementFunction(u.replace))
}

// replace is compose's replacement plus a note when a plain $VAR / ${VAR}
// fell back to the blank string: that is the case compose warns about
// (defaults like ${VAR:-x} report applied=true and are silent).
func (u *unsetVars) replace(sub string, m template.Mapping, cfg *template.Config) (string, error) {
	missed := ""
	record := func(k string) (string, bool) {
		v, ok := m(k)
		missed = ""
		if !ok {
			missed = k
		}
		return v, ok
	}
	v, applied, err := template.DefaultReplacementAppliedFunc(sub, record, cfg)
	if err == nil && !applied && missed != "" {
		u.mu.Lock()
		if !slices.Contains(u.names, missed) {
			u.names = append(u.names, missed)
		}
		u.mu.Unlock()
	}
	return v, err
}

func (u *unsetVars) list() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.names)
}

func (s *sources) unsetWarning(name string) string {
	msg := fmt.Sprintf("the %q variable is not set, defaulting to a blank string; set it in the environment or in .env, or write ${%s:-} to make the blank explicit", name, name)
	if s.inExtension(name) {
		// $PORT in x-devstack.run is meant for the shell, when the
		// process starts (port_env); Compose interpolates it at load.
		msg = fmt.Sprintf("the %q variable is not set at load, so $%s in x-devstack became a blank string; write $$%s to leave it to the shell when the process starts (as port_env's variable must be), or set %s in the environment or in .env", name, name, name, name)
	}
	if file, line := s.findVariable(name); file != "" {
		return (&Error{File: file, Line: line, Msg: msg}).Error()
	}
	return msg
}

// Patterns of compose-go errors we can position.
var (
	interpPathRE = regexp.MustCompile(`^error while interpolating (\S+): `)
	schemaRE     = regexp.MustCompile(`^validating (.+?): (\S*) (.*)$`)
	// "additional properties 'imag', 'foo' not allowed": the path is the
	// parent, the keys are quoted.
	additionalRE = regexp.MustCompile(`^additional propert(?:y|ies) '([^']+)'`)
	// "non-string key in services.api.x-devstack.protocol: 8080": a
	// mapping key written as a number.
	nonStringKeyRE = regexp.MustCompile(`non-string key in (\S+): (.+)$`)
	// "secrets.pw: one of file|environment must be set": compose-go's
	// semantic validation names the key path first.
	keyPathRE = regexp.MustCompile(`^((?:services|networks|volumes|secrets|configs|models|jobs)\.[^\s:]+): (.+)$`)
)

// composeError turns a compose-go load error into an *Error where we can
// tell the file and line; other errors are wrapped with the primary file.
func (s *sources) composeError(err error) error {
	var missing *template.MissingRequiredError
	if errors.As(err, &missing) {
		return s.missingVarError(err, missing)
	}
	msg := err.Error()
	if m := schemaRE.FindStringSubmatch(msg); m != nil {
		var path []string
		if m[2] != "" {
			path = strings.Split(m[2], ".")
		}
		what := m[3]
		if am := additionalRE.FindStringSubmatch(what); am != nil {
			path, what = append(path, am[1]), "false schema"
		}
		if len(path) > 0 {
			return s.schemaError(path, what)
		}
	}
	if m := nonStringKeyRE.FindStringSubmatch(msg); m != nil {
		return s.nonStringKeyError(strings.Split(m[1], "."), m[2])
	}
	if m := keyPathRE.FindStringSubmatch(msg); m != nil {
		return s.keyPathError(strings.Split(m[1], "."), m[2])
	}
	return fmt.Errorf("loading %s: %w", s.display(s.primary()), err)
}

// nonStringKeyError explains a mapping key written as a number (8080:
// rather than "8080":), which Compose refuses, at the key's line.
func (s *sources) nonStringKeyError(path []string, key string) error {
	e := &Error{Key: strings.Join(path, "."), Err: ErrInvalid}
	if len(path) > 2 && path[0] == "services" {
		// The message names the service already.
		e.Service, e.Key = path[1], strings.Join(path[2:], ".")
	}
	e.File, e.Line = s.locate(append(slices.Clone(path), key)...)
	e.Msg = fmt.Sprintf("%s has the key %s written as a number; quote it (%q:), as Compose wants every mapping key to be a string", e.Key, key, key)
	return e
}

// keyPathError positions a compose-go message that starts with the key
// path it is about; compose-go's words are kept, since they say what to set.
func (s *sources) keyPathError(path []string, what string) error {
	e := &Error{Key: strings.Join(path, "."), Err: ErrInvalid}
	if len(path) > 2 && path[0] == "services" {
		e.Service, e.Key = path[1], strings.Join(path[2:], ".")
	}
	e.File, e.Line = s.locate(path...)
	e.Msg = fmt.Sprintf("%s: %s (Compose refuses this too)", e.Key, what)
	return e
}

func (s *sources) missingVarError(err error, missing *template.MissingRequiredError) error {
	e := &Error{Key: missing.Variable, Err: ErrMissingVariable}
	reason := ""
	if missing.Reason != "" {
		reason = fmt.Sprintf(" (%s)", missing.Reason)
	}
	e.Msg = fmt.Sprintf("required variable %q is not set%s; set %s in the environment, in .env or with --env-file",
		missing.Variable, reason, missing.Variable)
	// The joined interpolation error holds one message per failing value;
	// the one for our variable carries its key path.
	var path []string
	for _, leaf := range leaves(err) {
		var m *template.MissingRequiredError
		if errors.As(leaf, &m) && m.Variable == missing.Variable {
			if pm := interpPathRE.FindStringSubmatch(leaf.Error()); pm != nil {
				path = strings.Split(pm[1], ".")
			}
			break
		}
	}
	if len(path) >= 2 && path[0] == "services" {
		e.Service = path[1]
	}
	e.File, e.Line = s.findVariable(missing.Variable)
	if e.File == "" {
		e.File, e.Line = s.locate(path...)
	}
	return e
}

// leaves flattens errors.Join trees.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// schemaError positions a compose-go schema violation: an unknown key
// ("false schema": the spec allows no other keys) or a wrongly typed value.
func (s *sources) schemaError(path []string, what string) error {
	e := &Error{Key: strings.Join(path, "."), Err: ErrInvalid}
	if len(path) >= 2 && path[0] == "services" {
		e.Service = path[1]
		e.Key = strings.Join(path[2:], ".")
	}
	e.File, e.Line = s.locate(path...)
	key := path[len(path)-1]
	if what == "false schema" {
		e.Err = ErrUnknownKey
		where := "key"
		if len(path) == 1 {
			where = "top-level key"
		}
		e.Msg = fmt.Sprintf("%s %q is not allowed%s", where, cmp.Or(e.Key, key), suggestion(key, schemaKeys(path[:len(path)-1])))
		return e
	}
	e.Msg = fmt.Sprintf("%q %s; fix its value (see the Compose specification)", strings.Join(path, "."), what)
	if e.Service != "" && e.Key != "" {
		e.Msg = fmt.Sprintf("%q %s; fix its value (see the Compose specification)", e.Key, what)
	}
	return e
}

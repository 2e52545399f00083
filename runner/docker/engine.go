package docker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// Labels devstack puts on every object it creates. The Compose labels next
// to them make `docker ps`, `docker compose ls` and Docker Desktop show the
// objects as one project.
const (
	LabelProject    = "dev.devstack.project"
	LabelService    = "dev.devstack.service"
	LabelConfigHash = "dev.devstack.config-hash"
	// LabelRole marks devstack's helper objects: "ambassador" on the
	// ambassador image and containers (see ambassador.go).
	LabelRole = "dev.devstack.role"
	// LabelStandby marks a container started ahead of a reload (see
	// standby.go); it keeps the label once it serves.
	LabelStandby = "dev.devstack.standby"

	composeProject    = "com.docker.compose.project"
	composeService    = "com.docker.compose.service"
	composeNumber     = "com.docker.compose.container-number"
	composeOneoff     = "com.docker.compose.oneoff"
	composeConfigHash = "com.docker.compose.config-hash"
	composeNetwork    = "com.docker.compose.network"
	composeVolume     = "com.docker.compose.volume"
	composeWorkingDir = "com.docker.compose.project.working_dir"
	composeFiles      = "com.docker.compose.project.config_files"
)

// pingTimeout bounds New: an engine that does not answer within it is
// taken as absent, so that `devstack up` never hangs on a dead socket.
const pingTimeout = 2 * time.Second

// Backend runs services as containers on one Docker Engine. It is safe for
// concurrent use by the runner's per-service goroutines.
type Backend struct {
	cli  *client.Client
	host string

	// mu serialises creation of project-wide objects (networks, volumes),
	// which several services starting at once would otherwise race on.
	mu         sync.Mutex
	ensured    map[string]bool               // "network/<name>", "volume/<name>" already there
	builds     map[string]*buildOnce         // by image tag and build config
	prepared   map[string]bool               // ambassadors Prepare started, by container id
	starting   map[string]chan struct{}      // ambassadors whose start Prepare has under way, by name; closed when it ends
	shared     map[string]*sharedAmbassadors // by project (shared.go)
	quitting   sync.WaitGroup                // removals Quit and Rebuild began; Down waits for them
	replaced   map[string]bool               // image IDs a rebuild took the tag from (dropReplaced)
	dropping   atomic.Bool                   // a dropUploads is under way
	noBuildKit bool                          // the engine refused a BuildKit build: builds use the classic builder
	records    map[string]*buildRecord       // what built each image, by image ID (buildrecord.go)
	recordTags map[string][]string           // the IDs records keeps per image tag, oldest first

	// ambMu serialises making the ambassador image, done once per backend.
	ambMu         sync.Mutex
	ambRef, ambID string // the image, once made
	ambErr        error  // why no image can be made from ambExe, for good
	ambExe        string // the devstack binary put in the image; "" is os.Executable()
	ambAddrs      ambassadorAddrs
	holder        []rootFile // what a standby mounts to run the holder (holderFiles)
	holderErr     error      // why no standby can run a holder, for good

	standbys map[string]*standby // by "<project>/<service>", under mu
}

var (
	_ runner.Backend        = (*Backend)(nil)
	_ runner.Builder        = (*Backend)(nil)
	_ runner.Cleaner        = (*Backend)(nil)
	_ runner.Preparer       = (*Backend)(nil)
	_ runner.Instance       = (*Instance)(nil)
	_ runner.Halter         = (*Instance)(nil)
	_ runner.HealthReporter = (*Instance)(nil)
)

// New connects to the engine chosen by DOCKER_HOST, else by the current
// docker context, else the platform default, and pings it with a short
// timeout. The API version is negotiated with the engine. When the engine
// does not answer, the error is an *EngineError naming the host tried.
func New(ctx context.Context) (*Backend, error) {
	host, err := engineHost()
	if err != nil {
		return nil, &EngineError{Host: host, Err: err}
	}
	cli, err := client.New(client.FromEnv, client.WithHost(host))
	if err != nil {
		return nil, &EngineError{Host: host, Err: err}
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = cli.Close()
		if errors.Is(pctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s: %w", pingTimeout, err)
		}
		return nil, &EngineError{Host: host, Err: err}
	}
	return &Backend{cli: cli, host: host, ensured: map[string]bool{}, prepared: map[string]bool{}, starting: map[string]chan struct{}{}, shared: map[string]*sharedAmbassadors{}}, nil
}

// Close releases the client's connections.
func (b *Backend) Close() error { return b.cli.Close() }

// Host is the engine address in use.
func (b *Backend) Host() string { return b.host }

// Client is the underlying engine client, for tests and diagnostics.
func (b *Backend) Client() *client.Client { return b.cli }

// Name implements runner.Backend.
func (*Backend) Name() string { return "docker" }

// CanRun reports whether svc says how to run as a container.
func CanRun(svc *project.Service) bool {
	return svc.Compose.Image != "" || svc.Compose.Build != nil
}

// engineHost picks the engine address the way the docker CLI does:
// DOCKER_HOST, else the endpoint of DOCKER_CONTEXT or of config.json's
// currentContext, else the default socket. TLS settings of a context are
// not read; such contexts can be used through DOCKER_HOST and
// DOCKER_CERT_PATH.
func engineHost() (string, error) {
	if h := os.Getenv(client.EnvOverrideHost); h != "" {
		return h, nil
	}
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return client.DefaultDockerHost, nil
		}
		dir = filepath.Join(home, ".docker")
	}
	name := os.Getenv("DOCKER_CONTEXT")
	if name == "" {
		var cfg struct {
			CurrentContext string `json:"currentContext"`
		}
		data, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err == nil {
			if err := json.Unmarshal(data, &cfg); err != nil {
				return client.DefaultDockerHost, fmt.Errorf("reading %s: %w", filepath.Join(dir, "config.json"), err)
			}
		}
		name = cfg.CurrentContext
	}
	if name == "" || name == "default" {
		return client.DefaultDockerHost, nil
	}
	// The CLI stores a context's metadata under the sha256 of its name.
	sum := sha256.Sum256([]byte(name))
	metaPath := filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json")
	data, err := os.ReadFile(metaPath)
	if err != nil {
		return "docker context " + name, fmt.Errorf("reading docker context %q: %w; run `docker context use default` or set DOCKER_HOST", name, err)
	}
	var meta struct {
		Endpoints map[string]struct {
			Host string `json:"Host"`
		} `json:"Endpoints"`
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return "docker context " + name, fmt.Errorf("reading docker context %q from %s: %w", name, metaPath, err)
	}
	host := meta.Endpoints["docker"].Host
	if host == "" {
		return "docker context " + name, fmt.Errorf("docker context %q has no docker endpoint; set DOCKER_HOST", name)
	}
	return host, nil
}

// projectLabels are the labels of every object of project p.
func projectLabels(p *project.Project) map[string]string {
	l := map[string]string{
		LabelProject:   p.Name,
		composeProject: p.Name,
	}
	if p.Dir != "" {
		l[composeWorkingDir] = p.Dir
	}
	if len(p.Files) > 0 {
		l[composeFiles] = strings.Join(p.Files, ",") // as Compose writes it
	}
	return l
}

// hashLabels adds the config hash of v, an object's Compose definition, in
// devstack's and Compose's label. Containers hash their full engine
// configuration instead (see planFor).
func hashLabels(l map[string]string, v any) map[string]string {
	data, _ := json.Marshal(v) // Compose model types always marshal
	sum := sha256.Sum256(data)
	l[LabelConfigHash] = hex.EncodeToString(sum[:])
	l[composeConfigHash] = l[LabelConfigHash]
	return l
}

// serviceLabels are the labels of the objects of one service.
func serviceLabels(p *project.Project, svc *project.Service) map[string]string {
	l := projectLabels(p)
	l[LabelService] = svc.Name
	l[composeService] = svc.Name
	l[composeOneoff] = "False"
	return l
}

// containerName is Compose's <project>-<service>-<n>, or container_name.
func containerName(p *project.Project, svc *project.Service, n int) string {
	if svc.Compose.ContainerName != "" {
		return svc.Compose.ContainerName
	}
	return p.Name + "-" + svc.Name + "-" + strconv.Itoa(n)
}

// imageName is the image a service runs: image: when set, else the name
// Compose gives built images, <project>-<service>.
func imageName(p *project.Project, svc *project.Service) string {
	return cmp.Or(svc.Compose.Image, p.Name+"-"+svc.Name)
}

// replicas is scale:, else deploy.replicas, else 1.
func replicas(svc *project.Service) int {
	// scale: 0 (a service kept out of `up`) still gets one container when
	// the runner asks for it: the runner decides what starts, not the count.
	return max(svc.Compose.GetScale(), 1)
}

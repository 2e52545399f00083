package process

import "strings"

// honoured are the Compose service keys that mean something for a
// process, as project.Service.Keys names them. Everything else is
// reported by Ignores, so no key is dropped without a word.
var honoured = map[string]bool{
	"develop":     true, // develop.watch: hot reload (devstack watch, up --watch)
	"environment": true, "ports": true, "depends_on": true, "healthcheck": true,
	"restart": true, "stop_signal": true, "stop_grace_period": true, "profiles": true,
	"links": true, "external_links": true, "ulimits": true,
	"secrets": true, "configs": true,
}

// instead says what happens instead for the keys a process cannot honour.
var instead = map[string]string{
	"image":           "not used: the service runs x-devstack.run as a process",
	"command":         "not used: the service runs x-devstack.run as a process",
	"entrypoint":      "not used: the service runs x-devstack.run as a process",
	"pull_policy":     "not used: the service runs x-devstack.run as a process",
	"platform":        "not used: the process runs on this machine's platform",
	"container_name":  "not used: a process has no container",
	"working_dir":     "not used: x-devstack.workdir sets a process's directory (default: the project directory)",
	"volumes":         "not mounted: the process sees the host's files",
	"tmpfs":           "not mounted: the process sees the host's files",
	"volumes_from":    "not mounted: the process sees the host's files",
	"networks":        "not applied: the process uses the host's network; other services reach it through its declared ports",
	"network_mode":    "not applied: the process uses the host's network",
	"hostname":        "not applied: the process uses the host's name",
	"domainname":      "not applied: the process uses the host's name",
	"extra_hosts":     "not applied: the process resolves names as the host does",
	"dns":             "not applied: the process resolves names as the host does",
	"dns_search":      "not applied: the process resolves names as the host does",
	"dns_opt":         "not applied: the process resolves names as the host does",
	"user":            "not applied: the process runs as the user who ran devstack",
	"privileged":      "not applied: the process runs as the user who ran devstack",
	"cap_add":         "not applied: the process runs as the user who ran devstack",
	"cap_drop":        "not applied: the process runs as the user who ran devstack",
	"security_opt":    "not applied: the process runs as the user who ran devstack",
	"read_only":       "not applied: the process sees the host's files",
	"labels":          "not applied: a process has no labels",
	"init":            "not needed: devstack reaps the process group itself",
	"scale":           "not applied: one process runs",
	"deploy.replicas": "not applied: one process runs",
	"expose":          "not applied: a process's ports are reachable on the host already",
	"tty":             "not applied: the process's output goes to the log, not a terminal",
	"stdin_open":      "not applied: the process's stdin is closed",
	"attach":          "ignored: every service's log is shown",
}

// noLimits is what becomes of the resource keys on a process: the rlimits
// a process can be given (ulimits) are per process or per user, none is a
// memory, CPU or process-count limit for a service's tree, and cgroup v2
// limits are not set by devstack.
const noLimits = "not applied: devstack sets no memory, CPU or process-count limit on a process (ulimits it does set); run the service as a container (x-devstack.backend: docker) to have them"

// resourceKeys are the keys noLimits answers for.
var resourceKeys = map[string]bool{
	"mem_limit": true, "mem_reservation": true, "memswap_limit": true, "mem_swappiness": true,
	"cpus": true, "cpu_shares": true, "cpu_quota": true, "cpu_period": true, "cpu_count": true,
	"cpu_percent": true, "cpuset": true, "cpu_rt_runtime": true, "cpu_rt_period": true,
	"pids_limit": true, "oom_kill_disable": true, "oom_score_adj": true, "blkio_config": true,
	"deploy.resources": true,
}

// Ignores says what becomes of a Compose key (as project.Service.Keys
// names it) when a service runs as a process: "" when the key applies,
// else what happens instead.
func Ignores(key string) string {
	if honoured[key] {
		return ""
	}
	if s, ok := instead[key]; ok {
		return s
	}
	if resourceKeys[key] {
		return noLimits
	}
	if strings.HasPrefix(key, "build.") {
		return "not used: the service runs x-devstack.run as a process (x-devstack.build is its build step)"
	}
	if strings.HasPrefix(key, "deploy.") {
		return "not applied to a process"
	}
	return "not applied to a process"
}

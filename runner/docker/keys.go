package docker

import "strings"

// honoured are the Compose service keys the docker backend applies, as
// project.Service.Keys names them. Everything else is reported by
// Ignores, so no key is dropped without a word.
var honoured = map[string]bool{
	"develop": true, // develop.watch: hot reload (devstack watch, up --watch)
	"image":   true, "command": true, "entrypoint": true, "working_dir": true, "user": true,
	"hostname": true, "domainname": true, "tty": true, "stdin_open": true,
	"stop_signal": true, "stop_grace_period": true, "labels": true, "healthcheck": true,
	"extra_hosts": true, "init": true, "privileged": true, "cap_add": true, "cap_drop": true,
	"read_only": true, "security_opt": true, "sysctls": true, "shm_size": true,
	"dns": true, "dns_search": true, "dns_opt": true, "network_mode": true, "networks": true,
	"ports": true, "expose": true, "volumes": true, "tmpfs": true, "environment": true,
	"depends_on": true, "restart": true, "scale": true, "container_name": true,
	"pull_policy": true, "profiles": true, "links": true, "external_links": true,
	"deploy.replicas": true, "deploy.resources": true,
	"mem_limit": true, "mem_reservation": true, "cpus": true, "cpu_shares": true,
	"pids_limit": true, "ulimits": true, "logging": true, "platform": true, "volumes_from": true,
	"secrets": true, "configs": true,
	"build.context": true, "build.dockerfile": true, "build.dockerfile_inline": true,
	"build.args": true, "build.target": true, "build.labels": true, "build.network": true,
	"build.no_cache": true, "build.pull": true, "build.extra_hosts": true,
}

// instead says what happens to keys the backend does not apply, where
// there is more to say than that they are ignored.
var instead = map[string]string{
	"attach":        "ignored: every service's log is shown",
	"deploy.mode":   "ignored: containers run on this engine, not a swarm",
	"deploy.labels": "ignored: deploy.labels apply to swarm services; use labels",
}

// Ignores says what becomes of a Compose key (as project.Service.Keys
// names it) when a service runs as a container: "" when the backend
// applies it, else what happens instead.
func Ignores(key string) string {
	if honoured[key] {
		return ""
	}
	if s, ok := instead[key]; ok {
		return s
	}
	if strings.HasPrefix(key, "deploy.") {
		return "ignored: of deploy, replicas and resources are applied"
	}
	if strings.HasPrefix(key, "build.") {
		return "ignored by devstack's image build"
	}
	return "ignored by devstack's docker backend"
}

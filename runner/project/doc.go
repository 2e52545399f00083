// Package project loads a devstack project: Compose files (devstack.yaml,
// compose.yaml, ...) through compose-go, plus devstack's x-devstack
// extensions, validated so that a bad file never starts anything.
//
//	-f files, -p, --profile, --env-file
//	        │
//	        ▼
//	compose-go (interpolate, include, extends, merge, normalise)
//	        │
//	        ▼
//	decode x-devstack, check ports, graph, runnability  ──► *Project
//
// It imports no other devstack package.
package project

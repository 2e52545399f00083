package project

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

// nestedKeys are the keys whose sub-keys a backend may honour one by one
// (build.args but not build.ssh), so Keys lists them one level down.
var nestedKeys = map[string]bool{"build": true, "deploy": true}

// Keys lists the Compose keys the service sets, as dotted paths, sorted:
// its top-level keys, and for build and deploy their sub-keys
// ("build.args", "deploy.resources"). Extension keys (x-*) are left out,
// as are keys compose-go resolved into others at load (env_file into
// environment, label_file into labels, extends). It is how the CLI tells
// a user which keys their service's backend does not honour.
func (s *Service) Keys() []string {
	data, err := json.Marshal(s.Compose)
	if err != nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil
	}
	var keys []string
	for k, v := range m {
		if strings.HasPrefix(k, "x-") || isZero(v) {
			continue
		}
		switch k {
		case "env_file", "label_file", "extends", "name":
			continue
		}
		sub, ok := v.(map[string]any)
		if nestedKeys[k] && ok {
			for sk, sv := range sub {
				if !isZero(sv) {
					keys = append(keys, k+"."+sk)
				}
			}
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// isZero reports whether a decoded JSON value says nothing: null, false,
// 0, "", or an empty list or mapping.
func isZero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case float64:
		return v == 0
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		for sv := range maps.Values(v) {
			if !isZero(sv) {
				return false
			}
		}
		return true
	}
	return false
}

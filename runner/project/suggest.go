package project

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/schema"
)

// composeSchema is compose-go's embedded JSON schema, parsed once. It is
// read-only after parsing; we only use it to list the keys valid at a path
// so an unknown key can get a "did you mean" suggestion.
var composeSchema = sync.OnceValue(func() map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(schema.Schema), &m); err != nil {
		return nil
	}
	return m
})

// schemaKeys lists the keys the Compose schema allows in the mapping at path
// (e.g. ["services", "web"] gives the service keys). It follows $ref, allOf,
// anyOf and oneOf, and patternProperties for map-like sections.
func schemaKeys(path []string) []string {
	root := composeSchema()
	if root == nil {
		return nil
	}
	nodes := []map[string]any{root}
	for _, key := range path {
		var next []map[string]any
		for _, n := range nodes {
			for _, alt := range expand(root, n) {
				next = append(next, child(alt, key)...)
			}
		}
		nodes = next
	}
	var keys []string
	for _, n := range nodes {
		for _, alt := range expand(root, n) {
			props, _ := alt["properties"].(map[string]any)
			for k := range props {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// expand resolves n's $ref and flattens its allOf/anyOf/oneOf members.
func expand(root, n map[string]any) []map[string]any {
	if ref, ok := n["$ref"].(string); ok {
		if target := resolveRef(root, ref); target != nil {
			n = target
		}
	}
	out := []map[string]any{n}
	for _, comb := range []string{"allOf", "anyOf", "oneOf"} {
		list, _ := n[comb].([]any)
		for _, item := range list {
			if m, ok := item.(map[string]any); ok {
				out = append(out, expand(root, m)...)
			}
		}
	}
	return out
}

func resolveRef(root map[string]any, ref string) map[string]any {
	cur := root
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		next, ok := cur[part].(map[string]any)
		if !ok {
			return nil
		}
		cur = next
	}
	return cur
}

// child returns the schema(s) for key inside n.
func child(n map[string]any, key string) []map[string]any {
	if props, ok := n["properties"].(map[string]any); ok {
		if c, ok := props[key].(map[string]any); ok {
			return []map[string]any{c}
		}
	}
	if _, err := strconv.Atoi(key); err == nil {
		if items, ok := n["items"].(map[string]any); ok {
			return []map[string]any{items}
		}
	}
	var out []map[string]any
	pats, _ := n["patternProperties"].(map[string]any)
	for pat, c := range pats {
		if strings.HasPrefix(pat, "^x-") {
			continue
		}
		if re, err := regexp.Compile(pat); err == nil && re.MatchString(key) {
			if m, ok := c.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// closest returns the candidate nearest to word by edit distance, or "" when
// none is close enough to be a plausible typo.
func closest(word string, candidates []string) string {
	best, bestDist := "", len(word)/2+2
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// suggestion renders `; did you mean "x"?` or, with no close match, a hint
// listing what is allowed.
func suggestion(word string, candidates []string) string {
	if c := closest(word, candidates); c != "" {
		return "; did you mean " + strconv.Quote(c) + "?"
	}
	if len(candidates) > 0 && len(candidates) <= 8 {
		quoted := make([]string, len(candidates))
		for i, c := range candidates {
			quoted[i] = strconv.Quote(c)
		}
		return "; remove it or use one of " + strings.Join(quoted, ", ")
	}
	return "; remove it or check its spelling against the Compose specification"
}

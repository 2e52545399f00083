package supervisor

import (
	"go/build"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/devstack/devstack"

// layerRules say which devstack packages a package may not import (its
// non-test imports), so that imports only run down the tree:
//
//	cmd → supervisor → control, proxy, runner/* → proxy/propagate → trace/store, trace/render → trace
//
// A rule for "a" applies to a and every package under it. runner/project
// and the span model import no devstack package at all.
var layerRules = []struct {
	pkg       string
	forbidden []string // "*": every devstack package
	except    []string // packages under pkg the rule skips
	allow     []string // imports under a forbidden tree the rule permits
}{
	{pkg: "runner/project", forbidden: []string{"*"}},
	{pkg: "runner", forbidden: []string{"control", "proxy", "supervisor", "cmd", "plugins"}},
	{pkg: "trace", forbidden: []string{"proxy", "runner", "control", "supervisor", "cmd", "plugins"}},
	{pkg: "proxy", forbidden: []string{"runner", "control", "supervisor", "cmd", "plugins/host"}},
	{pkg: "proxy/propagate", forbidden: []string{"proxy", "trace/store", "trace/render"}},
	// The fault model sits below control (plan: supervisor → control →
	// proxy/fault): the API carries its rules.
	{pkg: "control", forbidden: []string{"supervisor", "cmd", "proxy"}, allow: []string{"proxy/fault"}},
	{pkg: "supervisor", forbidden: []string{"cmd"}},
	// The fault model is a leaf the plugin SDK links: it must not pull
	// the proxy (or anything) in with it.
	{pkg: "proxy/fault", forbidden: []string{"*"}},
	{pkg: "plugins", forbidden: []string{"supervisor", "cmd", "control"}},
	// The example stack stands alone, as a user's services would.
	{pkg: "examples", forbidden: []string{"cmd", "supervisor", "control", "proxy", "runner", "trace", "plugins", "bench"}, except: []string{"examples/plugins"}},
	// An example plugin imports what a plugin author would: the sdk and
	// the fault model, nothing else.
	{pkg: "examples/plugins", forbidden: []string{"cmd", "supervisor", "control", "proxy", "runner", "trace", "plugins", "bench"}, allow: []string{"plugins/sdk", "proxy/fault"}},
}

// modelPkg: the span model itself (trace, not its subpackages) imports
// no devstack package.
const modelPkg = "trace"

func TestImportsRunDownTheTree(t *testing.T) {
	imports := moduleImports(t)
	if len(imports) < 10 {
		t.Fatalf("found only %d packages under the module root; is the walk broken?", len(imports))
	}
	for _, pkg := range slices.Sorted(maps.Keys(imports)) {
		for _, imp := range imports[pkg] {
			if why := layerViolation(pkg, imp); why != "" {
				t.Errorf("%s imports %s: %s", pkg, imp, why)
			}
		}
	}
}

// The rules themselves: each one reports the import it exists for.
func TestLayerRulesCatchUpwardImports(t *testing.T) {
	for _, bad := range [][2]string{
		{"runner/project", "proxy/propagate"},
		{"runner/project", "trace"},
		{"runner", "supervisor"},
		{"runner/docker", "control"},
		{"proxy", "runner"},
		{"proxy", "supervisor"},
		{"proxy/propagate", "proxy"},
		{"trace", "proxy/propagate"},
		{"trace", "trace/store"},
		{"trace/store", "proxy"},
		{"trace/render", "runner/project"},
		{"control", "supervisor"},
		{"supervisor", "cmd/devstack"},
		{"control", "proxy"},
		{"examples/plugins/flaky", "plugins/host"},
		{"examples/shop", "plugins/sdk"},
	} {
		if layerViolation(bad[0], bad[1]) == "" {
			t.Errorf("%s importing %s breaks no rule", bad[0], bad[1])
		}
	}
	for _, good := range [][2]string{
		{"supervisor", "control"},
		{"supervisor", "proxy"},
		{"supervisor", "runner/project"},
		{"control", "runner"},
		{"control", "trace/store"},
		{"proxy", "proxy/propagate"},
		{"proxy/propagate", "trace"},
		{"trace/store", "trace"},
		{"runner/docker", "runner"},
		{"cmd/devstack", "supervisor"},
		{"plugins/sdk", "proxy/fault"},
		{"supervisor", "plugins/host"},
		{"control", "proxy/fault"},
		{"examples/plugins/flaky", "plugins/sdk"},
	} {
		if why := layerViolation(good[0], good[1]); why != "" {
			t.Errorf("%s importing %s: %s; want allowed", good[0], good[1], why)
		}
	}
}

// layerViolation says which rule pkg importing imp (both relative to the
// module) breaks, or "" when none.
func layerViolation(pkg, imp string) string {
	if pkg == modelPkg {
		return "the span model imports no devstack package"
	}
	for _, r := range layerRules {
		if !under(pkg, r.pkg) || slices.ContainsFunc(r.except, func(e string) bool { return under(pkg, e) }) {
			continue
		}
		for _, f := range r.forbidden {
			if f == "*" {
				return r.pkg + " imports no devstack package"
			}
			// A package may import its own subpackages even when a rule
			// forbids the tree they sit in (proxy → proxy/propagate).
			if under(imp, f) && !under(imp, pkg) && !slices.ContainsFunc(r.allow, func(a string) bool { return under(imp, a) }) {
				return r.pkg + " sits below " + f
			}
		}
	}
	return ""
}

// under reports whether pkg is dir or a package below it.
func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// moduleImports lists, for every package of the module, its non-test
// imports of other module packages, both relative to the module root.
func moduleImports(t *testing.T) map[string][]string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); p != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			return filepath.SkipDir
		}
		bp, err := build.ImportDir(p, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		out[pkg] = nil
		for _, imp := range bp.Imports {
			if under(imp, module) && imp != module {
				out[pkg] = append(out[pkg], strings.TrimPrefix(imp, module+"/"))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

package project

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	load := func(yaml string, env ...string) Fingerprint {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := Load(t.Context(), LoadOptions{WorkDir: dir, Name: "fp", Env: env})
		if err != nil {
			t.Fatal(err)
		}
		return p.Fingerprint()
	}
	base := `
services:
  a: {image: x, environment: {V: "${V:-1}"}}
  b: {image: y, ports: ["8080:80"]}
`
	f := load(base)
	if g := load(base, "UNRELATED=1"); !equal(f, g) {
		t.Errorf("same file, other shell variables: %+v vs %+v", f, g)
	}
	changed, added, removed, proj := f.Changes(load(base, "V=2"))
	if !slices.Equal(changed, []string{"a"}) || added != nil || removed != nil || proj {
		t.Errorf("V=2 changes a only; got changed %v added %v removed %v project %v", changed, added, removed, proj)
	}
	changed, added, removed, proj = f.Changes(load(`
services:
  b: {image: y, ports: ["8080:80"]}
  c: {image: z}
networks:
  extra: {}
`))
	if changed != nil || !slices.Equal(added, []string{"c"}) || !slices.Equal(removed, []string{"a"}) || !proj {
		t.Errorf("got changed %v added %v removed %v project %v; want c added, a removed, project changed", changed, added, removed, proj)
	}
}

func equal(f, g Fingerprint) bool {
	c, a, r, p := f.Changes(g)
	return c == nil && a == nil && r == nil && !p
}

package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

// A project is found by its files when exactly one record names them.
func TestStateFromFindsTheOneProjectOfTheFiles(t *testing.T) {
	root := t.TempDir()
	t.Setenv("DEVSTACK_STATE_DIR", root)
	record := func(name string, files ...string) {
		t.Helper()
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := writeSource(dir, Source{Files: files, MaxSpans: len(name)}); err != nil {
			t.Fatal(err)
		}
	}
	record("shop", "/src/shop/devstack.yaml")
	record("shop-ci", "/src/shop/devstack.yaml", "/src/shop/ci.yaml")
	record("nofiles")
	if err := os.MkdirAll(filepath.Join(root, "older"), 0o700); err != nil { // a state dir from before project.json
		t.Fatal(err)
	}
	record("twin-a", "/src/twin/compose.yaml")
	record("twin-b", "/src/twin/compose.yaml")
	os.WriteFile(filepath.Join(root, "stray-file"), nil, 0o600)

	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{"/src/shop/devstack.yaml"}, "shop"},
		{[]string{"/src/shop/devstack.yaml", "/src/shop/ci.yaml"}, "shop-ci"},
		{[]string{"/src/shop/ci.yaml", "/src/shop/devstack.yaml"}, ""}, // order matters, as in a merge
		{[]string{"/src/other/devstack.yaml"}, ""},
		{[]string{"/src/twin/compose.yaml"}, ""}, // two names: only the name tells
		{nil, ""},
	} {
		got := ""
		if dir, src, ok := StateFrom(c.files); ok {
			got = filepath.Base(dir)
			if src.MaxSpans != len(got) {
				t.Errorf("StateFrom(%v) gave the source of another project: %+v", c.files, src)
			}
		}
		if got != c.want {
			t.Errorf("StateFrom(%v) = %q; want %q", c.files, got, c.want)
		}
	}
}

package supervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A project is found by its files when exactly one record names them.
func TestRunningFromFindsTheOneProjectOfTheFiles(t *testing.T) {
	root := t.TempDir()
	t.Setenv("DEVSTACK_STATE_DIR", root)
	record := func(name string, files ...string) {
		t.Helper()
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(Record{Project: name, Files: files})
		if err := os.WriteFile(Paths{dir}.State(), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	record("shop", "/src/shop/devstack.yaml")
	record("shop-ci", "/src/shop/devstack.yaml", "/src/shop/ci.yaml")
	record("old") // a record from before files were recorded
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
		if dir, ok := RunningFrom(c.files); ok {
			got = filepath.Base(dir)
		}
		if got != c.want {
			t.Errorf("RunningFrom(%v) = %q; want %q", c.files, got, c.want)
		}
	}
}

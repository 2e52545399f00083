package store_test

import (
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/devstack/devstack/trace/store"
)

// Spans hold paths, queries and headers: the store's directory and files
// are the user's only, even a directory an older devstack made 0755.
func TestStoreFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spans")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	st := openStore(t, dir, store.Options{})
	recordFlush(st, typicalTrace(rand.New(rand.NewPCG(1, 2)), time.Now())...)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		n++
		return nil
	})
	if n < 3 {
		t.Fatalf("the store wrote %d files and directories; want the directory, a segment and the summary", n)
	}
}

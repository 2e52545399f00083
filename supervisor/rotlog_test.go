package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The supervisor's log stays bounded whatever is logged: at the bound it
// moves to .1 and starts again; each line lands whole in one file.
func TestRotatingLogIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "supervisor.log")
	const max = 4096
	l, err := OpenRotatingLog(path, max)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var last string
	for i := range 10_000 { // about 100 times the bound
		last = fmt.Sprintf("line %05d: accepting connections failed: too many open files\n", i)
		if _, err := l.Write([]byte(last)); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, p := range []string{path, path + ".1"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(b) > max {
			t.Errorf("%s holds %d bytes; the bound is %d", p, len(b), max)
		}
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if line != "" && !strings.HasPrefix(line, "line ") {
				t.Errorf("%s holds a cut line %q", p, line)
			}
		}
		total += len(b)
	}
	if b, _ := os.ReadFile(path); !bytes.HasSuffix(b, []byte(last)) {
		t.Error("the newest line is not at the end of the current file")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 2 {
		t.Errorf("the log left %d files; want the log and one older", len(entries))
	}
}

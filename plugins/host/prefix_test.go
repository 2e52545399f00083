package host

import (
	"strings"
	"testing"
)

// A plugin's structured log lines are go-plugin's to log at their level;
// only its plain stderr (a panic's trace) is written with the prefix.
func TestPrefixWriterKeepsPlainLinesOnly(t *testing.T) {
	var out strings.Builder
	w := &prefixWriter{w: &out, prefix: "plugin x: "}
	in := `{"@level":"debug","@message":"plugin address","network":"unix"}` + "\n" +
		"panic: boom\n" +
		"goroutine 1 [running]:\n" +
		`{"@level":"info","@message":"serving"}` + "\n" + "half"
	for _, chunk := range []string{in[:10], in[10:70], in[70:]} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	want := "plugin x: panic: boom\nplugin x: goroutine 1 [running]:\n"
	if out.String() != want {
		t.Errorf("wrote %q, want %q", out.String(), want)
	}
}

package logstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// fakeClock returns t0, t0+1s, t0+2s, … on successive calls.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(time.Second)
	return t
}

func open(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func write(t *testing.T, w io.Writer, text string) {
	t.Helper()
	if n, err := io.WriteString(w, text); err != nil || n != len(text) {
		t.Fatalf("Write(%q) = %d, %v", text, n, err)
	}
}

func read(t *testing.T, dir string, q Query) []Line {
	t.Helper()
	lines, err := Read(dir, q)
	if err != nil {
		t.Fatalf("Read(%+v): %v", q, err)
	}
	return lines
}

// render formats lines as "service stream text", one per line.
func render(lines []Line) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s %s %s\n", l.Service, l.Stream, l.Text)
	}
	return b.String()
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	write(t, s.Writer("api", Stdout), "hello\nworld\n")
	write(t, s.Writer("api", Stderr), "oops: bad thing\r\n")
	write(t, s.Writer("api", System), "started pid 123\n")
	write(t, s.Writer("api", Stdout), "\n") // an empty line is a line
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	lines := read(t, dir, Query{})
	want := "api out hello\napi out world\napi err oops: bad thing\napi sys started pid 123\napi out \n"
	if got := render(lines); got != want {
		t.Fatalf("Read:\n%s\nwant:\n%s", got, want)
	}
	for i, l := range lines {
		if l.Time.IsZero() || l.Time.Location() != time.UTC || (i > 0 && l.Time.Before(lines[i-1].Time)) {
			t.Fatalf("line %d time %v", i, l.Time)
		}
	}

	raw, err := os.ReadFile(filepath.Join(dir, "api.log"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	ts, rest, _ := strings.Cut(first, " ")
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || len(ts) != len("2006-01-02T15:04:05.000000000Z") || rest != "out hello" {
		t.Fatalf("first record %q", first)
	}

	if _, err := s.Writer("api", Stdout).Write([]byte("late\n")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}

func TestReopenAppends(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	write(t, s.Writer("db", Stdout), "one\n")
	s.Close()
	// A crash left a torn record without its newline.
	f, err := os.OpenFile(filepath.Join(dir, "db.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("2025-03-01T12:00:00.000000000Z out tor")
	f.Close()

	s = open(t, dir, Options{})
	write(t, s.Writer("db", Stdout), "two\n")
	s.Close()
	if got, want := render(read(t, dir, Query{})), "db out one\ndb out tor\ndb out two\n"; got != want {
		t.Fatalf("Read:\n%s\nwant:\n%s", got, want)
	}
}

func TestPartialLines(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	out := s.Writer("api", Stdout)
	write(t, out, "par")
	write(t, out, "tial\nnext")
	if got, want := render(read(t, dir, Query{})), "api out partial\n"; got != want {
		t.Fatalf("before Flush:\n%s\nwant:\n%s", got, want)
	}
	if err := s.Flush("api"); err != nil {
		t.Fatal(err)
	}
	if got, want := render(read(t, dir, Query{})), "api out partial\napi out next\n"; got != want {
		t.Fatalf("after Flush:\n%s\nwant:\n%s", got, want)
	}
	write(t, s.Writer("api", Stderr), "at close")
	if err := s.Flush("nobody"); err != nil {
		t.Fatalf("Flush(unknown service) = %v", err)
	}
	s.Close()
	if got, want := render(read(t, dir, Query{})), "api out partial\napi out next\napi err at close\n"; got != want {
		t.Fatalf("after Close:\n%s\nwant:\n%s", got, want)
	}
}

func TestLongLinesSplit(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	// 'é' is two bytes; 40000 of them put a rune across the 64 KiB mark.
	long := strings.Repeat("é", 40000) + strings.Repeat("x", 100)
	w := s.Writer("api", Stdout)
	// In pieces, so that the split happens inside the partial buffer too.
	for i := 0; i < len(long); i += 1000 {
		write(t, w, long[i:min(i+1000, len(long))])
	}
	write(t, w, "\nshort\n")
	s.Close()

	lines := read(t, dir, Query{})
	var joined strings.Builder
	for i, l := range lines[:len(lines)-1] {
		if len(l.Text) > maxLineBytes {
			t.Fatalf("line %d is %d bytes", i, len(l.Text))
		}
		if !utf8.ValidString(l.Text) {
			t.Fatalf("line %d split inside a rune", i)
		}
		joined.WriteString(l.Text)
	}
	if len(lines) != 3 || joined.String() != long || lines[2].Text != "short" {
		t.Fatalf("got %d lines, joined %d bytes; want 2 pieces of %d bytes and \"short\"", len(lines), joined.Len(), len(long))
	}
}

func TestInvalidService(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	for _, name := range []string{"", ".", "..", "../x", "a/b", ".hidden", "a b", strings.Repeat("a", 201)} {
		if _, err := s.Writer(name, Stdout).Write([]byte("x\n")); !errors.Is(err, ErrInvalidService) {
			t.Errorf("Writer(%q).Write = %v, want ErrInvalidService", name, err)
		}
	}
	for _, name := range []string{"a", "api-gateway", "web_1", "v2.api", "A9"} {
		if _, err := s.Writer(name, Stdout).Write([]byte("x\n")); err != nil {
			t.Errorf("Writer(%q).Write = %v", name, err)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{MaxBytes: 100}, {MaxBytes: -1}, {Keep: -1}, {SubscriberBuffer: -1}} {
		if _, err := Open(t.TempDir(), o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Open(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
	if _, err := Read(t.TempDir(), Query{Tail: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Read(Tail: -1) = %v, want ErrInvalidOptions", err)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing"), Query{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read(missing dir) = %v, want ErrNotExist", err)
	}
}

func TestConcurrentStreams(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	const n = 2000
	var wg sync.WaitGroup
	for _, st := range []Stream{Stdout, Stderr} {
		w := s.Writer("api", st)
		wg.Go(func() {
			for i := range n {
				// Each line in three writes, to invite interleaving.
				line := fmt.Sprintf("%s-%d-%s\n", st, i, strings.Repeat(st.String(), 20))
				for _, part := range []string{line[:3], line[3:10], line[10:]} {
					if _, err := io.WriteString(w, part); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	s.Close()

	next := map[Stream]int{}
	for _, l := range read(t, dir, Query{}) {
		want := fmt.Sprintf("%s-%d-%s", l.Stream, next[l.Stream], strings.Repeat(l.Stream.String(), 20))
		if l.Text != want {
			t.Fatalf("got %q, want %q", l.Text, want)
		}
		next[l.Stream]++
	}
	if next[Stdout] != n || next[Stderr] != n {
		t.Fatalf("read %v lines, want %d per stream", next, n)
	}
}

// checkBound fails unless the files of service exist for .log to
// .log.<keep>, none is larger than maxBytes, and there is no .log.<keep+1>.
func checkBound(t *testing.T, dir, service string, keep int, maxBytes int64) {
	t.Helper()
	for i := 0; i <= keep; i++ {
		name := service + ".log"
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes {
			t.Errorf("%s is %d bytes, bound is %d", name, fi.Size(), maxBytes)
		}
	}
	extra := filepath.Join(dir, service+".log."+strconv.Itoa(keep+1))
	if _, err := os.Stat(extra); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists with Keep %d: %v", extra, keep, err)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	const maxBytes, keep, n = 4096, 2, 1000
	s := open(t, dir, Options{MaxBytes: maxBytes, Keep: keep})
	w := s.Writer("api", Stdout)
	for i := range n {
		write(t, w, fmt.Sprintf("line %04d\n", i))
	}
	s.Close()
	checkBound(t, dir, "api", keep, maxBytes)

	// What is left is a gapless suffix of what was written, and most of
	// what fits.
	lines := read(t, dir, Query{})
	if len(lines) < (keep*maxBytes)/len("2025-03-01T12:00:00.000000000Z out line 0000\n") {
		t.Fatalf("kept only %d lines", len(lines))
	}
	for i, want := len(lines)-1, n-1; i >= 0; i, want = i-1, want-1 {
		if lines[i].Text != fmt.Sprintf("line %04d", want) {
			t.Fatalf("line %d = %q, want %q", i, lines[i].Text, fmt.Sprintf("line %04d", want))
		}
	}
}

func TestRotationLongLine(t *testing.T) {
	dir := t.TempDir()
	const maxBytes, keep = 4096, 4 // first, 3 full pieces, rest+last
	s := open(t, dir, Options{MaxBytes: maxBytes, Keep: keep})
	w := s.Writer("api", Stdout)
	// Too long for one file: split into pieces that fit with their header.
	long := strings.Repeat("y", 3*maxBytes)
	write(t, w, "first\n"+long+"\nlast\n")
	s.Close()
	checkBound(t, dir, "api", keep, maxBytes)

	lines := read(t, dir, Query{})
	var joined strings.Builder
	for _, l := range lines[1 : len(lines)-1] {
		joined.WriteString(l.Text)
	}
	if lines[0].Text != "first" || joined.String() != long || lines[len(lines)-1].Text != "last" {
		t.Fatalf("got %d lines, %d bytes between first and last; want %d", len(lines), joined.Len(), len(long))
	}
}

func TestReadDuringRotation(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 2048, Keep: 1})
	w := s.Writer("api", Stdout)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := fmt.Fprintf(w, "%d\n", i); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for range 200 {
		lines := read(t, dir, Query{})
		for j := 1; j < len(lines); j++ {
			a, _ := strconv.Atoi(lines[j-1].Text)
			b, _ := strconv.Atoi(lines[j].Text)
			if b != a+1 {
				t.Fatalf("gap or duplicate: %d then %d", a, b)
			}
		}
	}
}

func TestTailAndSince(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 2048, Keep: 3})
	clock := newFakeClock()
	s.now = clock.now
	t0 := clock.t
	w := s.Writer("api", Stdout)
	const n = 200 // spans several files
	for i := range n {
		write(t, w, fmt.Sprintf("line %d\n", i))
	}
	s.Close()
	all := read(t, dir, Query{})
	first, _ := strconv.Atoi(strings.TrimPrefix(all[0].Text, "line "))
	if len(all) < 50 || first+len(all) != n {
		t.Fatalf("kept %d lines from %d; want a suffix ending at %d", len(all), first, n-1)
	}

	texts := func(lines []Line) string {
		var b []string
		for _, l := range lines {
			b = append(b, strings.TrimPrefix(l.Text, "line "))
		}
		return strings.Join(b, ",")
	}
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"tail", Query{Tail: 3}, "197,198,199"},
		{"tail more than lines in the current file", Query{Tail: 60}, texts(all[len(all)-60:])},
		{"tail more than kept", Query{Tail: 10000}, texts(all)},
		{"since", Query{Since: t0.Add(196 * time.Second)}, "196,197,198,199"},
		{"since between lines", Query{Since: t0.Add(196*time.Second + 1)}, "197,198,199"},
		{"since and tail", Query{Since: t0.Add(190 * time.Second), Tail: 2}, "198,199"},
		{"tail and since", Query{Since: t0.Add(198 * time.Second), Tail: 5}, "198,199"},
		{"since after all", Query{Since: t0.Add(time.Hour)}, ""},
		{"unknown service", Query{Services: []string{"nope", "../etc"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := texts(read(t, dir, tt.q)); got != tt.want {
				t.Fatalf("Read(%+v) = %s, want %s", tt.q, got, tt.want)
			}
		})
	}
}

func TestMergeOrder(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	clock := newFakeClock()
	s.now = clock.now
	web, db, api := s.Writer("web", Stdout), s.Writer("db", Stderr), s.Writer("api", System)
	write(t, db, "db 1\n")
	write(t, web, "web 2\n")
	write(t, api, "api 3\n")
	write(t, web, "web 4\nweb 4b\n") // one write, one timestamp
	write(t, db, "db 5\n")
	s.Close()

	want := "db err db 1\nweb out web 2\napi sys api 3\nweb out web 4\nweb out web 4b\ndb err db 5\n"
	if got := render(read(t, dir, Query{})); got != want {
		t.Fatalf("Read:\n%s\nwant:\n%s", got, want)
	}
	// Tail counts per service.
	want = "db err db 1\nweb out web 4\nweb out web 4b\ndb err db 5\n"
	if got := render(read(t, dir, Query{Services: []string{"web", "db"}, Tail: 2})); got != want {
		t.Fatalf("Read(web, db, tail 2):\n%s\nwant:\n%s", got, want)
	}
}

func TestMergeTies(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := []Line{{Time: t0, Service: "a", Text: "1"}, {Time: t0.Add(-time.Second), Service: "a", Text: "2"}}
	b := []Line{{Time: t0, Service: "b", Text: "1"}}
	got := render(merge([][]Line{a, b}))
	// Ties go to the earlier service; a's own order survives its clock jump.
	if want := "a Stream(0) 1\na Stream(0) 2\nb Stream(0) 1\n"; got != want {
		t.Fatalf("merge:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseLogName(t *testing.T) {
	tests := []struct {
		file string
		svc  string
		n    int
		ok   bool
	}{
		{"api.log", "api", 0, true},
		{"api.log.1", "api", 1, true},
		{"api.log.12", "api", 12, true},
		{"x.log.log.1", "x.log", 1, true},
		{"x.log.1.log", "x.log.1", 0, true},
		{"api.log.0", "", 0, false},
		{"api.log.x", "", 0, false},
		{".log", "", 0, false},
		{"notes.txt", "", 0, false},
	}
	for _, tt := range tests {
		svc, n, ok := parseLogName(tt.file)
		if svc != tt.svc || n != tt.n || ok != tt.ok {
			t.Errorf("parseLogName(%q) = %q, %d, %v; want %q, %d, %v", tt.file, svc, n, ok, tt.svc, tt.n, tt.ok)
		}
	}
}

func TestScanBackward(t *testing.T) {
	long := strings.Repeat("z", readChunk+10) // spans chunks
	tests := []struct {
		name, content string
		want          []string
	}{
		{"empty", "", nil},
		{"one", "a\n", []string{"a"}},
		{"unterminated tail skipped", "a\nb\npartial", []string{"b", "a"}},
		{"only partial", "partial", nil},
		{"empty lines", "\n\na\n", []string{"a", "", ""}},
		{"long line", "a\n" + long + "\nb\n", []string{"b", long, "a"}},
		{"long partial", "a\n" + long, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var got []string
			if err := scanBackward(f, func(l []byte) bool { got = append(got, string(l)); return true }); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || len(got) != len(tt.want) {
				t.Fatalf("got %d lines %.60q, want %d %.60q", len(got), got, len(tt.want), tt.want)
			}
		})
	}
}

package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"google.golang.org/protobuf/encoding/protowire"
)

// The BuildKit progress of one build, as the engine sends it: a step is
// repeated as it changes, and is printed once when it starts and once when
// it ends; its output lines carry its number; an error ends it.
func TestBuildProgress(t *testing.T) {
	ts := func(sec int64, nsec int32) []byte {
		b := protowire.AppendTag(nil, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(sec))
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(nsec))
	}
	str := func(b []byte, num protowire.Number, s string) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, s)
	}
	msg := func(b []byte, num protowire.Number, m []byte) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, m)
	}
	vertex := func(digest, name string, started, completed []byte, cached bool, errMsg string) []byte {
		v := str(nil, 1, digest)
		v = str(v, 2, "sha256:input") // inputs: ignored
		v = str(v, 3, name)
		if cached {
			v = protowire.AppendTag(v, 4, protowire.VarintType)
			v = protowire.AppendVarint(v, 1)
		}
		if started != nil {
			v = msg(v, 5, started)
		}
		if completed != nil {
			v = msg(v, 6, completed)
		}
		if errMsg != "" {
			v = str(v, 7, errMsg)
		}
		return msg(nil, 1, v)
	}
	logLine := func(digest, text string) []byte {
		l := str(nil, 1, digest)
		l = msg(l, 2, ts(100, 0))
		l = protowire.AppendTag(l, 3, protowire.VarintType)
		l = protowire.AppendVarint(l, 1)
		l = msg(l, 4, []byte(text))
		return msg(nil, 3, l)
	}
	status := func(parts ...[]byte) *json.RawMessage {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		raw := json.RawMessage(`"` + base64.StdEncoding.EncodeToString(b) + `"`)
		return &raw
	}
	var out strings.Builder
	p := newBuildProgress(&out)
	for _, st := range []*json.RawMessage{
		status(vertex("a", "[internal] load build definition from Dockerfile", nil, nil, false, "")),
		status(vertex("a", "[internal] load build definition from Dockerfile", ts(100, 0), nil, false, "")),
		status(vertex("a", "[internal] load build definition from Dockerfile", ts(100, 0), ts(100, 250_000_000), false, "")),
		status(vertex("b", "[1/2] FROM base", ts(101, 0), ts(101, 0), true, "")),
		status(vertex("c", "[2/2] RUN make", ts(102, 0), nil, false, ""), logLine("c", "cc -o app\nok\n")),
		status(vertex("c", "[2/2] RUN make", ts(102, 0), ts(103, 0), false, "exit code: 2")),
		status(vertex("c", "[2/2] RUN make", ts(102, 0), ts(103, 0), false, "exit code: 2")),
	} {
		if !p.aux(buildKitTrace, st) {
			t.Fatal("aux did not take a moby.buildkit.trace message")
		}
	}
	want := `#1 [internal] load build definition from Dockerfile
#1 DONE 0.2s
#2 [1/2] FROM base
#2 CACHED
#3 [2/2] RUN make
#3 cc -o app
#3 ok
#3 ERROR: exit code: 2
`
	if out.String() != want {
		t.Errorf("progress printed\n%s\nwant\n%s", out.String(), want)
	}
	// The classic builder's aux (the image ID) is not BuildKit's progress.
	id := json.RawMessage(`{"ID":"sha256:abc"}`)
	if p.aux("", &id) {
		t.Error("aux took the classic builder's image ID message")
	}
	// Garbage is skipped, not fatal: progress is only progress.
	bad := json.RawMessage(`"` + base64.StdEncoding.EncodeToString([]byte{0x0a, 0xff}) + `"`)
	p.aux(buildKitTrace, &bad)
}

// A BuildKit build leaves no record of its uploaded context in the build
// cache: no later build could hit it.
func TestBuildDropsItsUpload(t *testing.T) {
	s := newStack(t, `
services:
  up:
    build: ./up
`)
	if err := os.MkdirAll(filepath.Join(s.dir, "up"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "up", "Dockerfile"), []byte("FROM "+testImage+"\nCOPY big /big\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "up", "big"), []byte(randHex(512)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = s.b.cli.ImageRemove(ctx, s.p.Name+"-up", client.ImageRemoveOptions{Force: true})
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	before, err := s.b.buildCache(ctx)
	if err != nil {
		t.Fatal(err)
	}
	had := map[string]bool{}
	for _, r := range before {
		had[r.ID] = true
	}
	l := &logs{}
	if err := s.b.Build(ctx, specFor(s.p, "up", l)); err != nil {
		t.Fatalf("build: %v\n%s", err, l)
	}
	// The drop runs after the build, off its path: wait for it to end.
	uploads := func() (n int) {
		recs, err := s.b.buildCache(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !had[r.ID] && strings.HasPrefix(r.Description, uploadPrefix) {
				n++
			}
		}
		return n
	}
	// Listing the cache holds its records for a moment (in use, which a
	// prune skips): look only once the drop has ended.
	deadline := time.Now().Add(30 * time.Second)
	for s.b.dropping.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the build cache drop did not end within 30s of the build")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := uploads(); n > 0 {
		t.Fatalf("the build's uploaded context is still in the build cache (%d records)", n)
	}
}

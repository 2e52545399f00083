package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
	"google.golang.org/protobuf/encoding/protowire"
)

// Images are built with the engine's BuildKit (POST /build?version=2), the
// context sent as a tar in the request as for the classic builder: the
// engine's BuildKit reads it from the request when no client session is
// given, so devstack needs no session and no buildx. The classic builder
// commits a layer for every instruction, which on some storage drivers
// (fuse-overlayfs) costs about a second each: a five-line Dockerfile that
// copies in one binary took 5 s there, and 0.2 s with BuildKit, which is
// most of a container's hot reload.
//
// DOCKER_BUILDKIT=0 picks the classic builder, as it does for the docker
// CLI; an engine without BuildKit (Windows) gets it too, after its refusal.

// builderFor is the builder a build asks the engine for.
func (b *Backend) builderFor() build.BuilderVersion {
	if v, ok := os.LookupEnv("DOCKER_BUILDKIT"); ok {
		if on, err := strconv.ParseBool(v); err == nil && !on {
			return build.BuilderV1
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noBuildKit {
		return build.BuilderV1
	}
	return build.BuilderBuildKit
}

// buildKitRefused reports whether a build request's error says the engine
// has no BuildKit; the build is then tried with the classic builder, and
// so are the later ones.
func (b *Backend) buildKitRefused(err error) bool {
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "buildkit") {
		return false
	}
	b.mu.Lock()
	b.noBuildKit = true
	b.mu.Unlock()
	return true
}

// buildKitTrace is the aux ID of BuildKit's progress messages: a
// moby.buildkit.v1.StatusResponse protobuf, base64 in JSON.
const buildKitTrace = "moby.buildkit.trace"

// buildProgress prints BuildKit's progress as `docker build
// --progress=plain` does: each step once when it starts, its output, and
// how it ended. The status messages repeat a step as it changes, so what
// was printed is remembered.
type buildProgress struct {
	w     io.Writer
	steps map[string]*buildStep // by vertex digest
	n     int                   // steps numbered so far
}

type buildStep struct {
	n             int // 0 until printed
	name          string
	started, done bool
	at            time.Time // when it started, as BuildKit says
}

func newBuildProgress(w io.Writer) *buildProgress {
	return &buildProgress{w: w, steps: map[string]*buildStep{}}
}

// aux takes one aux message; it reports whether it was BuildKit progress.
func (p *buildProgress) aux(id string, raw *json.RawMessage) bool {
	if id != buildKitTrace || raw == nil {
		return false
	}
	var pb []byte // the JSON string is base64, which Unmarshal decodes
	if err := json.Unmarshal(*raw, &pb); err != nil {
		return true
	}
	// A message that does not decode is skipped: it is progress only, and
	// the build's result arrives in the JSON stream either way.
	_ = p.status(pb)
	return true
}

// status decodes a StatusResponse: vertexes = 1, logs = 3 (statuses = 2,
// byte counts of transfers, are not shown).
func (p *buildProgress) status(b []byte) error {
	return eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			return p.vertex(v)
		case 3:
			return p.log(v)
		}
		return nil
	})
}

// vertex decodes a Vertex: digest = 1, name = 3, cached = 4, started = 5,
// completed = 6, error = 7.
func (p *buildProgress) vertex(b []byte) error {
	var (
		digest, name, errMsg string
		cached               bool
		started, completed   time.Time
	)
	err := eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			digest = string(v)
		case 3:
			name = string(v)
		case 4:
			cached = len(v) > 0 && v[0] != 0
		case 5:
			started = timestamp(v)
		case 6:
			completed = timestamp(v)
		case 7:
			errMsg = string(v)
		}
		return nil
	})
	if err != nil || digest == "" {
		return err
	}
	s := p.step(digest, name)
	if !s.started && (!started.IsZero() || cached) {
		s.started, s.at = true, started
		fmt.Fprintf(p.w, "#%d %s\n", p.num(s), s.name)
	}
	if s.done {
		return nil
	}
	switch {
	case errMsg != "":
		s.done = true
		fmt.Fprintf(p.w, "#%d ERROR: %s\n", p.num(s), errMsg)
	case cached:
		s.done = true
		fmt.Fprintf(p.w, "#%d CACHED\n", p.num(s))
	case !completed.IsZero():
		s.done = true
		fmt.Fprintf(p.w, "#%d DONE %.1fs\n", p.num(s), completed.Sub(s.at).Seconds())
	}
	return nil
}

// log decodes a VertexLog: vertex = 1, msg = 4.
func (p *buildProgress) log(b []byte) error {
	var digest string
	var msg []byte
	err := eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			digest = string(v)
		case 4:
			msg = v
		}
		return nil
	})
	if err != nil || len(msg) == 0 {
		return err
	}
	s := p.step(digest, "")
	for line := range strings.Lines(string(msg)) {
		fmt.Fprintf(p.w, "#%d %s\n", p.num(s), strings.TrimRight(line, "\r\n"))
	}
	return nil
}

func (p *buildProgress) step(digest, name string) *buildStep {
	s, ok := p.steps[digest]
	if !ok {
		s = &buildStep{}
		p.steps[digest] = s
	}
	if name != "" {
		s.name = name
	}
	return s
}

// num is s's number, given when it is first printed, so that steps are
// numbered in the order they show.
func (p *buildProgress) num(s *buildStep) int {
	if s.n == 0 {
		p.n++
		s.n = p.n
	}
	return s.n
}

// eachField calls f with each field of the protobuf message b: the bytes
// of a length-delimited field, the varint of a varint field (encoded back
// as one byte when it is 0 or 1, enough for a bool). Other wire types are
// skipped.
func eachField(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			var x uint64
			x, n = protowire.ConsumeVarint(b)
			v = []byte{byte(min(x, 1))}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if v != nil {
			if err := f(num, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// timestamp decodes a google.protobuf.Timestamp: seconds = 1, nanos = 2.
func timestamp(b []byte) time.Time {
	var sec, nsec int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return time.Time{}
		}
		b = b[n:]
		if typ != protowire.VarintType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return time.Time{}
			}
			b = b[n:]
			continue
		}
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return time.Time{}
		}
		b = b[n:]
		switch num {
		case 1:
			sec = int64(x)
		case 2:
			nsec = int64(x)
		}
	}
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, nsec)
}

// uploadPrefix begins the description of the build cache record that
// holds a context sent in the request: the engine serves it to BuildKit
// under a URL of its own, made up per build.
const uploadPrefix = "http url http://build-context-"

// dropUploads removes the build cache records of uploaded contexts that
// no build is using. No later build can hit them (each upload has a URL
// of its own), so every build would leave one behind, the size of its
// context: 10 MB per hot reload of the shop. What the builds made (their
// layers) stays cached, as docker's own builds leave it; `docker builder
// prune` frees that.
//
// The engine lets go of a build's upload a moment after the build's
// response ends: one still in use is tried again, for a while.
func (b *Backend) dropUploads(ctx context.Context) error {
	for {
		recs, err := b.buildCache(ctx)
		if err != nil {
			return err
		}
		var ids []string
		inUse := false
		for _, r := range recs {
			if strings.HasPrefix(r.Description, uploadPrefix) {
				if r.InUse {
					inUse = true
				} else {
					ids = append(ids, r.ID)
				}
			}
		}
		if err := b.pruneCache(ctx, ids); err != nil || !inUse {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dropUploadsLater runs dropUploads off the build's path (a reload waits
// for its build), one at a time: a drop under way takes what later builds
// left too, or the next build's drop does.
func (b *Backend) dropUploadsLater() {
	if !b.dropping.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer b.dropping.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.dropUploads(ctx) // only disk space: a failure is retried at the next build
	}()
}

// buildCache lists the engine's build cache records.
func (b *Backend) buildCache(ctx context.Context) ([]build.CacheRecord, error) {
	du, err := b.cli.DiskUsage(ctx, client.DiskUsageOptions{BuildCache: true, Verbose: true})
	if err != nil {
		return nil, fmt.Errorf("listing the build cache: %w", err)
	}
	return du.BuildCache.Items, nil
}

// pruneCache removes the build cache records with these IDs; one a build
// is using stays.
func (b *Backend) pruneCache(ctx context.Context, ids []string) error {
	// One at a time: the engine matches a record against every id given
	// at once, which none is.
	for _, id := range ids {
		f := make(client.Filters).Add("id", id)
		if _, err := b.cli.BuildCachePrune(ctx, client.BuildCachePruneOptions{Filters: f}); err != nil {
			return fmt.Errorf("pruning build cache record %s: %w", id, err)
		}
	}
	return nil
}

package docker

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/build"
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

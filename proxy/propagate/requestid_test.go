package propagate_test

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
)

func TestEnsureRequestID(t *testing.T) {
	h := http.Header{}
	h.Set("X-Request-ID", "  keep me, exactly ")
	if got := propagate.EnsureRequestID(h); got != "  keep me, exactly " {
		t.Errorf("existing id changed: %q", got)
	}

	h = http.Header{}
	id := propagate.EnsureRequestID(h)
	if len(id) != 36 || id[14] != '4' || h.Get("X-Request-ID") != id {
		t.Errorf("generated id %q, header %q", id, h.Get("X-Request-ID"))
	}
	if propagate.EnsureRequestID(h) != id {
		t.Error("second call generated another id")
	}

	h = http.Header{"X-Request-Id": {""}}
	if propagate.EnsureRequestID(h) == "" {
		t.Error("empty id not replaced")
	}
}

func TestNewRequestIDDeterministic(t *testing.T) {
	a := propagate.NewRequestID(rand.NewChaCha8([32]byte{1}))
	b := propagate.NewRequestID(rand.NewChaCha8([32]byte{1}))
	if a != b {
		t.Errorf("same seed, different ids: %q %q", a, b)
	}
	if a[8] != '-' || a[13] != '-' || a[18] != '-' || a[23] != '-' || a[14] != '4' || strings.IndexByte("89ab", a[19]) < 0 {
		t.Errorf("not a v4 UUID: %q", a)
	}
}

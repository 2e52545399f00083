//go:build !linux

package holder

import (
	"context"
	"errors"
)

// Options configure Serve; see serve_linux.go.
type Options struct {
	Socket string
	Argv   []string
}

// Serve is Linux-only: the holder runs in Linux containers.
func Serve(ctx context.Context, o Options) (int, error) {
	return 0, errors.New("holder: runs only on linux (inside a container)")
}

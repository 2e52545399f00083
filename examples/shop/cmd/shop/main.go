package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/devstack/devstack/examples/shop/internal/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], env{stdout: os.Stdout, getenv: os.Getenv})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(exitCode(err))
	}
}

// env is what a subcommand may touch of the outside world.
type env struct {
	stdout io.Writer
	getenv func(string) string
}

// usageError is a command line that cannot run; it exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg + "\n" + usage() }

func usage() string {
	return "usage: shop serve " + strings.Join(service.Names(), "|") + "\n       shop probe [PATH|URL]"
}

func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

func run(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		return &usageError{"missing command"}
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, e, args[1:])
	case "probe":
		return runProbe(ctx, e, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(e.stdout, usage())
		return nil
	default:
		return &usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
}

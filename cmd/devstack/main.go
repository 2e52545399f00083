// Command devstack runs a multi-service development stack from a
// compose-style file, as native processes or containers, behind a tracing
// proxy.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
)

func main() {
	err := run()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "devstack:", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "devstack:", err)
	os.Exit(1)
}

func run() error {
	// compose-go reports some findings through logrus (an obsolete
	// version: key, a yes/no boolean, a deprecated external.name): print
	// them as devstack prints its own warnings, not as log records.
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(plainFormatter{})
	// Commands that need finer control of signals (up, supervise) install
	// their own handlers; this context covers the rest.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return newRootCmd(os.Stdout, os.Stderr).ExecuteContext(ctx)
}

// exitError carries an exit code to main. A nil err exits silently.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// plainFormatter prints a logrus entry as "warning: message".
type plainFormatter struct{}

func (plainFormatter) Format(e *logrus.Entry) ([]byte, error) {
	return []byte(e.Level.String() + ": " + e.Message + "\n"), nil
}

package runner_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMain doubles the test binary as the services under test: with
// RUNNERTEST_MODE set, it behaves as one and never runs tests. Real
// processes, no fakes.
func TestMain(m *testing.M) {
	if mode := os.Getenv("RUNNERTEST_MODE"); mode != "" {
		os.Exit(testService(mode))
	}
	os.Exit(m.Run())
}

// testService modes:
//
//	block  record "start NAME" in $LOG, then wait for SIGTERM, record "stop NAME", exit 0
//	       (IGNORE_TERM=1: ignore SIGTERM; READY_AFTER=dur: create $READY after it)
//	exit   exit with $CODE after recording start
//	serve  like block, plus an HTTP server on 127.0.0.1:$PORT
//	spawn  start a grandchild `sleep 300`, write its pid to $CHILD_PID, then block
func testService(mode string) int {
	name := os.Getenv("DEVSTACK_SERVICE")
	record := func(what string) {
		if p := os.Getenv("LOG"); p != "" {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err == nil {
				fmt.Fprintf(f, "%s %s\n", what, name)
				f.Close()
			}
		}
	}
	sigs := make(chan os.Signal, 1)
	if os.Getenv("IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	}
	record("start")
	if os.Getenv("READY_AFTER") == "" && os.Getenv("READY") != "" {
		// Signals are set up: tell the healthcheck.
		os.WriteFile(os.Getenv("READY"), nil, 0o600)
	}
	fmt.Println("hello from", name)
	switch mode {
	case "exit":
		code, _ := strconv.Atoi(os.Getenv("CODE"))
		fmt.Fprintln(os.Stderr, "exiting with", code)
		return code
	case "serve":
		l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	case "spawn":
		c := exec.Command("sleep", "300")
		if err := c.Start(); err != nil {
			return 4
		}
		os.WriteFile(os.Getenv("CHILD_PID"), []byte(strconv.Itoa(c.Process.Pid)), 0o600)
	}
	if d, err := time.ParseDuration(os.Getenv("READY_AFTER")); err == nil {
		time.AfterFunc(d, func() { os.WriteFile(os.Getenv("READY"), nil, 0o600) })
	}
	<-sigs
	record("stop")
	return 0
}

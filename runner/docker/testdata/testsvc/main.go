// Command testsvc is the one program of the docker backend's test image
// (FROM scratch, so it is its own healthcheck and client too).
//
//	testsvc serve            HTTP on :$PORT (8080): / says hello, /healthz is 200
//	testsvc check URL        exit 0 when URL answers 200 (a healthcheck)
//	testsvc fetch URL...     print each URL's body; exit 1 on the first failure
//	testsvc exit N           print a line on each stream, exit N
//
// serve with CRASH_ONCE=path exits 3 when path does not exist, after
// creating it: the first start crashes, the restart works.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testsvc serve|check URL|fetch URL...|exit N")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve()
	case "check":
		if err := get(os.Args[2], io.Discard); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "fetch":
		for _, u := range os.Args[2:] {
			if err := get(u, os.Stdout); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	case "exit":
		n, _ := strconv.Atoi(os.Args[2])
		fmt.Println("out: exiting with", n)
		fmt.Fprintln(os.Stderr, "err: exiting with", n)
		os.Exit(n)
	case "hog":
		// Allocate and touch N MiB, then wait: past a memory limit, the
		// kernel's OOM killer ends it.
		n, _ := strconv.Atoi(os.Args[2])
		var keep [][]byte
		for range n {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("out: holding", len(keep), "MiB")
		select {}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func get(url string, w io.Writer) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func serve() {
	if marker := os.Getenv("CRASH_ONCE"); marker != "" {
		if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
			_ = os.WriteFile(marker, []byte("crashed\n"), 0o644)
			fmt.Println("crashing once")
			os.Exit(3)
		}
	}
	name := os.Getenv("NAME")
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		fmt.Fprintf(w, "hello from %s (%s) FOO=%s\n", name, host, os.Getenv("FOO"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	// /file/<path> answers the content of /<path> in the container: what
	// a reload put there.
	mux.HandleFunc("/file/", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(strings.TrimPrefix(r.URL.Path, "/file"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_, _ = w.Write(b)
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux}
	// PID 1 in a container ignores signals it has no handler for.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		fmt.Println("stopping on signal")
		_ = srv.Shutdown(context.Background())
	}()
	fmt.Printf("%s listening on :%s\n", name, port)
	fmt.Fprintln(os.Stderr, "stderr works")
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

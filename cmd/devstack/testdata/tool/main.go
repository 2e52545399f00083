// Command tool is a static program for the Docker tests' FROM scratch
// images: it serves (waits), echoes, prints a variable or a file, exits
// with a code, or prints its limits.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tool serve|echo|env|cat|exit|limits")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	case "echo":
		fmt.Println(strings.Join(os.Args[2:], " "))
	case "env":
		fmt.Println(os.Getenv(os.Args[2]))
	case "cat":
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
	case "exit":
		n, _ := strconv.Atoi(os.Args[2])
		os.Exit(n)
	case "limits":
		var r syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
		fmt.Printf("nofile %d\n", r.Cur)
		for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cpu.max"} {
			b, _ := os.ReadFile(f)
			fmt.Printf("%s %s\n", f, strings.TrimSpace(string(b)))
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown:", os.Args[1])
		os.Exit(2)
	}
}

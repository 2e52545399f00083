// Command linkload runs concurrent mixed checkouts through a shop-shaped
// chain behind the tracing proxy (see package load) and prints how many
// of the links the proxy inferred for a service that drops the trace
// context went into the wrong trace, and how many of those it showed as
// certain:
//
//	go run ./bench/linkload -c 50 -n 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/devstack/devstack/bench/linkload/load"
)

func main() {
	c := flag.Int("c", 50, "checkouts in flight at once")
	n := flag.Int("n", 1000, "checkouts in all")
	seed := flag.Uint64("seed", 1, "seed of the checkouts' trace ids")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := load.Run(ctx, load.Options{Concurrency: *c, Checkouts: *n, Seed: *seed})
	if err != nil {
		fmt.Fprintln(os.Stderr, "linkload:", err)
		os.Exit(1)
	}
	fmt.Printf("concurrency %d: %s\n", *c, res)
}

// Command shoplinks sends concurrent checkouts to the example shop (up,
// behind devstack) and counts, from what the shop's own services answer,
// the calls of orders (which drops the trace context) that devstack put
// in another checkout's trace, and how many of those it showed as
// certain. Every shop service says in its answer which trace it was in;
// the gateway's is the checkout's. A payments call is found among the
// spans by the order id in its query.
//
//	go run ./bench/shoplinks -c 50 -n 200 -devstack ./devstack -dir examples/shop
//
// bench/shoplinks.sh runs the shop and this, for a devstack built from
// the tree.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

type answer struct {
	TraceID string `json:"trace_id"`
	Order   struct {
		ID        string `json:"id"`
		Inventory struct {
			TraceID string `json:"trace_id"`
		} `json:"inventory"`
		Payment struct {
			TraceID string `json:"trace_id"`
		} `json:"payment"`
	} `json:"order"`
}

type span struct {
	Callee     string `json:"callee"`
	Query      string `json:"query"`
	Inferred   bool   `json:"inferred"`
	Candidates int    `json:"candidates"`
}

func main() {
	gateway := flag.String("gateway", "localhost:18080", "the shop's gateway")
	c := flag.Int("c", 50, "checkouts in flight at once")
	n := flag.Int("n", 200, "checkouts in all")
	extra := flag.String("query", "slow=inventory:20ms", "added to every checkout's query (a slow hop makes the checkouts overlap)")
	devstack := flag.String("devstack", "devstack", "the devstack binary that runs the shop")
	dir := flag.String("dir", ".", "the shop's directory, where devstack finds it")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	answers, err := checkouts(ctx, *gateway, *c, *n, *extra)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoplinks:", err)
		os.Exit(1)
	}
	traces := map[string][]span{}
	spansOf := func(id string) ([]span, error) {
		if s, ok := traces[id]; ok {
			return s, nil
		}
		cmd := exec.CommandContext(ctx, *devstack, "trace", id, "--format", "json")
		cmd.Dir = *dir
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("devstack trace %s: %w", id, err)
		}
		var s []span
		if err := json.Unmarshal(out, &s); err != nil {
			return nil, err
		}
		traces[id] = s
		return s, nil
	}
	var invWrong, payWrong, payWrongCertain, payGuessed, payUnfound int
	for _, a := range answers {
		if a.Order.Inventory.TraceID != a.TraceID {
			invWrong++
		}
		spans, err := spansOf(a.Order.Payment.TraceID)
		if err != nil {
			fmt.Fprintln(os.Stderr, "shoplinks:", err)
			os.Exit(1)
		}
		guessed, found := false, false
		for _, s := range spans {
			if s.Callee == "payments" && strings.Contains(s.Query, "order="+a.Order.ID) {
				found, guessed = true, s.Inferred && s.Candidates > 1
			}
		}
		if !found {
			payUnfound++ // a devstack that records no query: its links all look certain
		}
		if guessed {
			payGuessed++
		}
		if a.Order.Payment.TraceID != a.TraceID {
			payWrong++
			if !guessed {
				payWrongCertain++
			}
		}
	}
	fmt.Printf("concurrency %d, checkouts %d: orders → inventory in the wrong trace %d; orders → payments in the wrong trace %d, shown as guessed %d, wrong but shown as certain %d",
		*c, len(answers), invWrong, payWrong, payGuessed, payWrongCertain)
	if payUnfound > 0 {
		fmt.Printf(" (%d payments hops not found by their query: counted as shown certain)", payUnfound)
	}
	fmt.Println()
}

// checkouts sends n checkouts, c at a time, and returns the answers.
func checkouts(ctx context.Context, gateway string, c, n int, extra string) ([]answer, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		out  []answer
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				url := fmt.Sprintf("http://%s/checkout?item=sku-%d&qty=1&%s", gateway, i%5+1, extra)
				req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				resp, err := client.Do(req)
				var a answer
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("checkout: %s: %s", resp.Status, body)
					}
					if err == nil {
						err = json.Unmarshal(body, &a)
					}
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					out = append(out, a)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return out, fmt.Errorf("%d of %d checkouts failed, the first: %w", len(errs), n, errs[0])
	}
	return out, nil
}

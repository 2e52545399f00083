// Command flaky is an example external devstack plugin: it makes one
// service fail a share of its requests with 503, as set in its options,
// and logs the runner's events. Build it and declare it in the project
// file:
//
//	go build -o bin/flaky ./examples/plugins/flaky
//
//	x-devstack:
//	  plugins:
//	    - name: flaky
//	      path: bin/flaky
//	      sha256: <sha256sum bin/flaky>   # optional: refuse any other binary
//	      options: {service: payments, probability: 0.1}
//
// It imports only devstack's plugins/sdk (and proxy/fault for the rule
// types): that is the whole surface a plugin needs.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"

	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/proxy/fault"
)

type options struct {
	Service     string  `json:"service"`
	Probability float64 `json:"probability"`
}

type flaky struct{}

func (flaky) Info() sdk.Info { return sdk.Info{Name: "flaky", Version: "0.1.0"} }

func (flaky) Start(_ context.Context, cfg sdk.Config, host sdk.Host) error {
	var o options
	if err := json.Unmarshal(cfg.Options, &o); err != nil || o.Service == "" {
		return fmt.Errorf("options: want {service: NAME, probability: 0.1} (%v)", err)
	}
	// Rules are pushed once; devstack's proxy applies them per request
	// without calling back here.
	return host.PushRules(sdk.RuleSet{Rules: []fault.Rule{{
		ID: "flaky", Service: o.Service, Probability: o.Probability,
		Fault: fault.Fault{Kind: fault.Abort, Status: 503, Body: "flaky says no\n"},
	}}})
}

// HandleEvent logs what the runner does; a plugin's stderr goes to
// devstack's log.
func (flaky) HandleEvent(_ context.Context, ev sdk.Event) {
	log.Printf("event: %s %s %s", ev.Service, ev.Kind, ev.Message)
}

func main() { sdk.Serve(flaky{}) }

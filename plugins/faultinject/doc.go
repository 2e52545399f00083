// Package faultinject is devstack's fault injection plugin, built only on
// plugins/sdk and served by the devstack binary (`devstack plugin
// faultinject`, which devstack runs itself).
//
// It owns the fault rules: those of x-devstack.faults at start, and those
// that `devstack fault add|rm|clear|apply` (or the control API) send as
// commands. Each change is pushed whole to devstack, which compiles it into
// the proxy's fault table; the proxy decides per request in-process, so no
// request ever waits on this plugin. Expired rules are dropped and the set
// pushed again. After a crash the plugin starts from the rules it last
// pushed (sdk.Config.Rules), so `fault ls` still shows them.
package faultinject

package project

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// extKey is the extension key devstack owns, at project and service level.
const extKey = "x-devstack"

// Keys allowed inside x-devstack. They mirror the yaml tags of ProjectExt
// and ServiceExt; the decoders below are hand-written rather than
// reflection-based so each wrong type gets a message that says what to write.
var (
	projectExtKeys = []string{"backend", "faults", "plugins", "toxiproxy", "trace", "workdir"}
	serviceExtKeys = []string{"ambassador", "backend", "build", "external", "port_env", "protocol", "run", "workdir"}
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// extDecoder decodes one x-devstack block and positions its errors.
type extDecoder struct {
	src     *sources
	service string   // "" at project level
	base    []string // key path of the x-devstack block
}

func (d *extDecoder) fail(key, msg string, sentinel error) error {
	path := append(slices.Clone(d.base), key)
	file, line := d.src.locate(path...)
	return &Error{File: file, Line: line, Service: d.service, Key: d.name() + "." + key, Msg: msg, Err: sentinel}
}

// name is the block's name as a user reads it: x-devstack, or
// x-devstack.trace inside it.
func (d *extDecoder) name() string {
	if i := slices.Index(d.base, extKey); i >= 0 {
		return strings.Join(d.base[i:], ".")
	}
	return extKey
}

// block returns the x-devstack mapping from ext, or nil when absent.
func (d *extDecoder) block(ext types.Extensions, allowed []string) (map[string]any, error) {
	raw, ok := ext[extKey]
	if !ok || raw == nil {
		return nil, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		file, line := d.src.locate(d.base...)
		return nil, &Error{File: file, Line: line, Service: d.service, Key: extKey, Err: ErrInvalid,
			Msg: fmt.Sprintf("x-devstack must be a mapping with the keys %s, not %s", strings.Join(allowed, ", "), describe(raw))}
	}
	// Report unknown keys in a stable order.
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			return nil, d.fail(k, fmt.Sprintf("%s key %q is not allowed%s", d.name(), k, suggestion(k, allowed)), ErrUnknownKey)
		}
	}
	return m, nil
}

func decodeProjectExt(ext types.Extensions, src *sources) (ProjectExt, error) {
	d := &extDecoder{src: src, base: []string{extKey}}
	var x ProjectExt
	m, err := d.block(ext, projectExtKeys)
	if err != nil || m == nil {
		return x, err
	}
	if x.Workdir, err = d.str(m, "workdir", "a directory path relative to the project directory"); err != nil {
		return x, err
	}
	if x.Trace, err = d.trace(m); err != nil {
		return x, err
	}
	if x.Plugins, err = d.plugins(m); err != nil {
		return x, err
	}
	if x.Faults, err = d.faults(m); err != nil {
		return x, err
	}
	if v, ok := m["toxiproxy"]; ok && v != nil {
		n, isInt := toInt(v)
		if !isInt || n < 1 || n > 65535 {
			return x, d.fail("toxiproxy", fmt.Sprintf("x-devstack key \"toxiproxy\" is the loopback port of the Toxiproxy-compatible API (8474 is Toxiproxy's own), not %s", describe(v)), ErrInvalid)
		}
		x.Toxiproxy = n
	}
	x.Backend, err = d.backend(m)
	return x, err
}

var pluginExtKeys = []string{"disabled", "name", "options", "path", "sha256"}

// plugins decodes x-devstack.plugins: a list of {name, path, sha256,
// options, disabled}.
func (d *extDecoder) plugins(m map[string]any) ([]PluginExt, error) {
	v, ok := m["plugins"]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, d.fail("plugins", fmt.Sprintf("x-devstack key \"plugins\" must be a list of {name, path, sha256, options, disabled}, not %s", describe(v)), ErrInvalid)
	}
	var out []PluginExt
	for i, item := range list {
		sub := &extDecoder{src: d.src, base: append(slices.Clone(d.base), "plugins", strconv.Itoa(i))}
		pm, ok := item.(map[string]any)
		if !ok {
			return nil, d.fail("plugins", fmt.Sprintf("x-devstack.plugins[%d] must be a mapping with name and path, not %s", i, describe(item)), ErrInvalid)
		}
		for k := range pm {
			if !slices.Contains(pluginExtKeys, k) {
				return nil, sub.fail(k, fmt.Sprintf("x-devstack.plugins[%d] key %q is not allowed%s", i, k, suggestion(k, pluginExtKeys)), ErrUnknownKey)
			}
		}
		var pe PluginExt
		var err error
		if pe.Name, err = sub.str(pm, "name", "the plugin's name"); err != nil {
			return nil, err
		}
		if pe.Name == "" {
			return nil, d.fail("plugins", fmt.Sprintf("x-devstack.plugins[%d] has no name", i), ErrInvalid)
		}
		if pe.Path, err = sub.str(pm, "path", "the plugin's executable, relative to the project directory"); err != nil {
			return nil, err
		}
		if pe.SHA256, err = sub.str(pm, "sha256", "the executable's sha256 in hex"); err != nil {
			return nil, err
		}
		if b, ok := pm["disabled"]; ok {
			if pe.Disabled, ok = b.(bool); !ok {
				return nil, sub.fail("disabled", fmt.Sprintf("x-devstack.plugins[%d] key \"disabled\" must be true or false, not %s", i, describe(b)), ErrInvalid)
			}
		}
		if o, ok := pm["options"]; ok && o != nil {
			if pe.Options, err = json.Marshal(o); err != nil {
				return nil, sub.fail("options", fmt.Sprintf("x-devstack.plugins[%d] options: %v", i, err), ErrInvalid)
			}
		}
		out = append(out, pe)
	}
	return out, nil
}

// faults keeps x-devstack.faults as JSON: the fault plugin reads it (and
// the supervisor checks it before anything starts).
func (d *extDecoder) faults(m map[string]any) (json.RawMessage, error) {
	v, ok := m["faults"]
	if !ok || v == nil {
		return nil, nil
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, d.fail("faults", fmt.Sprintf("x-devstack key \"faults\" must be a mapping (header_trigger, rules), not %s", describe(v)), ErrInvalid)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, d.fail("faults", fmt.Sprintf("x-devstack key \"faults\": %v", err), ErrInvalid)
	}
	return b, nil
}

// maxSpansLimit bounds trace.max_spans: the store keeps every span in
// memory (about 600 bytes each), so 10 million is about 6 GB.
const maxSpansLimit = 10_000_000

var traceExtKeys = []string{"bodies", "disabled", "formats", "max_spans", "redact", "redact_query"}

// trace decodes the project-level trace block.
func (d *extDecoder) trace(m map[string]any) (TraceExt, error) {
	var t TraceExt
	v, ok := m["trace"]
	if !ok || v == nil {
		return t, nil
	}
	tm, ok := v.(map[string]any)
	if !ok {
		return t, d.fail("trace", fmt.Sprintf("x-devstack key \"trace\" must be a mapping (formats, redact, redact_query, max_spans, bodies, disabled), not %s", describe(v)), ErrInvalid)
	}
	sub := &extDecoder{src: d.src, service: d.service, base: append(slices.Clone(d.base), "trace")}
	for k := range tm {
		if !slices.Contains(traceExtKeys, k) {
			return t, sub.fail(k, fmt.Sprintf("x-devstack.trace key %q is not allowed%s", k, suggestion(k, traceExtKeys)), ErrUnknownKey)
		}
	}
	var err error
	if list, ok := tm["formats"].([]any); ok {
		// A YAML list, [w3c, b3], reads as the comma-separated string.
		names := make([]string, len(list))
		for i, x := range list {
			if names[i], ok = x.(string); !ok {
				return t, sub.fail("formats", fmt.Sprintf("x-devstack.trace key \"formats\" must hold format names (w3c, sentry, b3, b3multi), not %s", describe(x)), ErrInvalid)
			}
		}
		t.Formats = strings.Join(names, ",")
	} else if t.Formats, err = sub.str(tm, "formats", `such as "w3c,sentry,b3"`); err != nil {
		return t, err
	}
	if t.Formats != "" || tm["formats"] != nil {
		if msg := checkTraceFormats(t.Formats); msg != "" {
			return t, sub.fail("formats", "x-devstack.trace key \"formats\" is "+msg, ErrInvalid)
		}
	}
	if t.Redact, err = sub.nameList(tm, "redact", "header names"); err != nil {
		return t, err
	}
	if t.RedactQuery, err = sub.nameList(tm, "redact_query", "query parameter names"); err != nil {
		return t, err
	}
	if n, ok := tm["max_spans"]; ok {
		v, isInt := toInt(n)
		if !isInt {
			return t, sub.fail("max_spans", fmt.Sprintf("x-devstack.trace key \"max_spans\" must be a number, not %s", describe(n)), ErrInvalid)
		}
		t.MaxSpans = v
		if t.MaxSpans < 100 || t.MaxSpans > maxSpansLimit {
			return t, sub.fail("max_spans", fmt.Sprintf("x-devstack.trace key \"max_spans\" is %d; keep from 100 to %d spans (each holds about 600 bytes in memory)", t.MaxSpans, maxSpansLimit), ErrInvalid)
		}
	}
	if n, ok := tm["bodies"]; ok {
		v, isInt := toInt(n)
		if !isInt || v < 0 || v > 1<<20 {
			return t, sub.fail("bodies", fmt.Sprintf("x-devstack.trace key \"bodies\" must be a number of bytes from 0 (off) to 1048576, not %s", describe(n)), ErrInvalid)
		}
		t.Bodies = v
	}
	if b, ok := tm["disabled"]; ok {
		bv, ok := b.(bool)
		if !ok {
			return t, sub.fail("disabled", fmt.Sprintf("x-devstack.trace key \"disabled\" must be true or false, not %s", describe(b)), ErrInvalid)
		}
		t.Disabled = bv
	}
	return t, nil
}

func decodeServiceExt(name string, ext types.Extensions, src *sources) (ServiceExt, error) {
	d := &extDecoder{src: src, service: name, base: []string{"services", name, extKey}}
	var x ServiceExt
	m, err := d.block(ext, serviceExtKeys)
	if err != nil || m == nil {
		return x, err
	}
	if x.Run, err = d.command(m, "run"); err != nil {
		return x, err
	}
	if x.Build, err = d.command(m, "build"); err != nil {
		return x, err
	}
	if x.Workdir, err = d.str(m, "workdir", "a directory path relative to the project directory"); err != nil {
		return x, err
	}
	if x.PortEnv, err = d.str(m, "port_env", "the name of an environment variable (e.g. PORT)"); err != nil {
		return x, err
	}
	if x.PortEnv != "" && !envNameRE.MatchString(x.PortEnv) {
		return x, d.fail("port_env", fmt.Sprintf("x-devstack key \"port_env\" is %q, which is not an environment variable name; use letters, digits and '_' (e.g. PORT)", x.PortEnv), ErrInvalid)
	}
	if x.Protocol, x.PortProtocols, err = d.protocol(m); err != nil {
		return x, err
	}
	if x.Ambassador, err = d.oneOf(m, "ambassador", "auto", "always", "never"); err != nil {
		return x, err
	}
	if v, ok := m["external"]; ok && v != nil {
		b, isBool := v.(bool)
		if !isBool {
			return x, d.fail("external", fmt.Sprintf("x-devstack key \"external\" must be true (you run the service yourself) or false, not %s", describe(v)), ErrInvalid)
		}
		x.External = b
	}
	x.Backend, err = d.backend(m)
	return x, err
}

// protocols are the values of the service key "protocol".
var protocols = []string{"auto", "http", "tcp"}

// protocol decodes the service key "protocol": one protocol for every
// port, or a mapping from port number to protocol. The mapping's numbers
// are checked against the service's ports once those are parsed (see
// portProtocols); until then they are the numbers as written.
func (d *extDecoder) protocol(m map[string]any) (string, map[uint16]string, error) {
	perPort, ok := m["protocol"].(map[string]any)
	if !ok {
		if v, set := m["protocol"]; set && v != nil {
			if _, isStr := v.(string); !isStr {
				return "", nil, d.fail("protocol", fmt.Sprintf(`x-devstack key "protocol" must be "auto", "http" or "tcp", or a mapping from port to one of them ("5432": tcp), not %s`, describe(v)), ErrInvalid)
			}
		}
		p, err := d.oneOf(m, "protocol", protocols...)
		return p, nil, err
	}
	out := make(map[uint16]string, len(perPort))
	for _, k := range slices.Sorted(maps.Keys(perPort)) {
		fail := func(msg string) error {
			file, line := d.src.locate(append(slices.Clone(d.base), "protocol", k)...)
			return &Error{File: file, Line: line, Service: d.service, Key: extKey + ".protocol", Msg: msg, Err: ErrInvalid}
		}
		n, err := strconv.ParseUint(k, 10, 16)
		if err != nil || n == 0 {
			return "", nil, fail(fmt.Sprintf("x-devstack key \"protocol\" has the key %q, which is not a port number; key it by the service's ports, like \"8080\": http", k))
		}
		v, isStr := perPort[k].(string)
		if !isStr || !slices.Contains(protocols, v) {
			return "", nil, fail(fmt.Sprintf("x-devstack key \"protocol\" gives port %d %s; use \"auto\", \"http\" or \"tcp\"", n, describe(perPort[k])))
		}
		out[uint16(n)] = v
	}
	return "", out, nil
}

func (d *extDecoder) backend(m map[string]any) (string, error) {
	b, err := d.str(m, "backend", `"process" or "docker"`)
	if err != nil {
		return "", err
	}
	switch b {
	case "", "process", "docker":
		return b, nil
	}
	return "", d.fail("backend", fmt.Sprintf(`x-devstack key "backend" is %q; use "process" or "docker" (or leave it out to choose automatically)`, b), ErrInvalid)
}

// oneOf decodes an optional string key that must be one of values.
func (d *extDecoder) oneOf(m map[string]any, key string, values ...string) (string, error) {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = strconv.Quote(v)
	}
	want := strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
	v, err := d.str(m, key, want)
	if err != nil || v == "" || slices.Contains(values, v) {
		return v, err
	}
	return "", d.fail(key, fmt.Sprintf("%s key %q is %q; use %s", d.name(), key, v, want), ErrInvalid)
}

// str decodes an optional string key.
func (d *extDecoder) str(m map[string]any, key, want string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", d.fail(key, fmt.Sprintf("%s key %q must be a string, %s, not %s", d.name(), key, want, describe(v)), ErrInvalid)
	}
	return s, nil
}

// command decodes run/build: a string runs through the shell, a list of
// strings runs directly.
func (d *extDecoder) command(m map[string]any, key string) (Command, error) {
	v, ok := m[key]
	if !ok {
		return Command{}, nil
	}
	bad := func(what string) error {
		return d.fail(key, fmt.Sprintf("%s key %q must be a string (run by /bin/sh -c) or a list of strings (run directly), not %s", d.name(), key, what), ErrInvalid)
	}
	switch v := v.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return Command{}, d.fail(key, fmt.Sprintf("%s key %q is empty; give the command to run, or remove the key", d.name(), key), ErrInvalid)
		}
		return Command{Args: []string{v}, Shell: true}, nil
	case []any:
		if len(v) == 0 {
			return Command{}, d.fail(key, fmt.Sprintf("%s key %q is an empty list; give the program and its arguments, or remove the key", d.name(), key), ErrInvalid)
		}
		args := make([]string, len(v))
		for i, a := range v {
			s, ok := a.(string)
			if !ok {
				return Command{}, bad(fmt.Sprintf("a list holding %s at index %d (quote it)", describe(a), i))
			}
			args[i] = s
		}
		return Command{Args: args}, nil
	case nil:
		return Command{}, d.fail(key, fmt.Sprintf("%s key %q has no value; give the command to run, or remove the key", d.name(), key), ErrInvalid)
	default:
		return Command{}, bad(describe(v))
	}
}

// describe names a decoded YAML value's type for messages, with the value
// when it is short.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "an empty value"
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("a boolean (%v)", v)
	case int, int64, uint64, float64:
		return fmt.Sprintf("a number (%v)", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("a %T", v)
}

// toInt reads a YAML number as an int.
func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case uint64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}

// TraceFormats are the names x-devstack.trace.formats may list, besides
// "none" alone. The supervisor maps them to the proxy's formats; a test
// there checks that the proxy reads every one.
var TraceFormats = []string{"w3c", "sentry", "b3", "b3multi"}

// checkTraceFormats says what is wrong with a formats list, or "" when
// nothing is: names are case-insensitive and may be surrounded by spaces.
func checkTraceFormats(s string) string {
	const want = "want a comma-separated list of w3c, sentry, b3, b3multi, or none alone"
	none, some := false, false
	for part := range strings.SplitSeq(s, ",") {
		switch name := strings.ToLower(strings.TrimSpace(part)); {
		case name == "none":
			none = true
		case name == "":
			return fmt.Sprintf("%q: an empty name; %s", s, want)
		case slices.Contains(TraceFormats, name):
			some = true
		default:
			return fmt.Sprintf("%q: unknown name %q; %s", s, strings.TrimSpace(part), want)
		}
	}
	if none && some {
		return fmt.Sprintf("%q: \"none\" cannot be combined with other formats; %s", s, want)
	}
	return ""
}

// nameList decodes a trace redaction list, key of tm: names (what) or
// "!name" to take a default one out.
func (d *extDecoder) nameList(tm map[string]any, key, what string) ([]string, error) {
	r, ok := tm[key]
	if !ok {
		return nil, nil
	}
	list, ok := r.([]any)
	if !ok {
		return nil, d.fail(key, fmt.Sprintf("x-devstack.trace key %q must be a list of %s, not %s", key, what, describe(r)), ErrInvalid)
	}
	var out []string
	for _, x := range list {
		s, ok := x.(string)
		if !ok || s == "" || s == "!" {
			return nil, d.fail(key, fmt.Sprintf("x-devstack.trace key %q must hold %s (or !name to record a default one), not %s", key, what, describe(x)), ErrInvalid)
		}
		out = append(out, s)
	}
	return out, nil
}

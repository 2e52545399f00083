package render_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/render"
)

// The mirror of the OTLP messages a strict importer decodes (Jaeger and the
// collector use the generated pdata types): only these fields may appear.
type (
	xRequest struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []xKV `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Scope struct {
					Name string `json:"name"`
				} `json:"scope"`
				Spans []xSpan `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	xSpan struct {
		TraceID           string `json:"traceId"`
		SpanID            string `json:"spanId"`
		ParentSpanID      string `json:"parentSpanId"`
		Name              string `json:"name"`
		Kind              int    `json:"kind"`
		StartTimeUnixNano string `json:"startTimeUnixNano"`
		EndTimeUnixNano   string `json:"endTimeUnixNano"`
		Attributes        []xKV  `json:"attributes"`
		Status            *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	}
	xKV struct {
		Key   string `json:"key"`
		Value xAny   `json:"value"`
	}
	xAny struct {
		StringValue *string  `json:"stringValue"`
		BoolValue   *bool    `json:"boolValue"`
		IntValue    *string  `json:"intValue"`
		DoubleValue *float64 `json:"doubleValue"`
		ArrayValue  *struct {
			Values []xAny `json:"values"`
		} `json:"arrayValue"`
	}
)

func (s xSpan) attr(key string) (xAny, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return xAny{}, false
}

func (v xAny) String() string {
	switch {
	case v.StringValue != nil:
		return "s:" + *v.StringValue
	case v.IntValue != nil:
		return "i:" + *v.IntValue
	case v.BoolValue != nil:
		return "b:" + strconv.FormatBool(*v.BoolValue)
	case v.DoubleValue != nil:
		return "d:" + strconv.FormatFloat(*v.DoubleValue, 'f', -1, 64)
	case v.ArrayValue != nil:
		out := "a:"
		for i, e := range v.ArrayValue.Values {
			if i > 0 {
				out += ","
			}
			out += e.String()
		}
		return out
	}
	return "<unset>"
}

func otlpFixture() []*trace.Span {
	root := hop(1, 1, 0, "", "gateway", 0, 120)
	root.Method, root.Route, root.Query = "POST", "/checkout", "region=EU"
	root.TTFB = 1500 * time.Microsecond
	root.BytesIn, root.BytesOut = 42, 1024
	root.RequestID = "req-1"
	root.ReqHeaders = []trace.Header{{Name: "Accept", Value: "application/json"}, {Name: "X-Tag", Value: "a"}, {Name: "X-Tag", Value: "b"}}
	root.RespHeaders = []trace.Header{{Name: "Content-Type", Value: "application/json"}}

	orders := hop(1, 2, 1, "gateway", "orders", 10, 100)
	orders.Status = 503
	orders.Faults = []string{"latency 300ms"}

	grpc := hop(1, 3, 2, "orders", "payments", 20, 30)
	grpc.Protocol, grpc.Method, grpc.Route, grpc.GRPCStatus = "grpc", "POST", "/pay.v1.Pay/Charge", 14
	grpc.Inferred, grpc.Candidates = true, 4

	db := hop(1, 4, 2, "orders", "postgres", 60, 5)
	db.Protocol, db.Method, db.Route, db.Status, db.GRPCStatus = "tcp", "", "", 0, -1
	db.Error = "connection reset by peer"

	again := hop(1, 5, 1, "gateway", "orders", 112, 3)
	return []*trace.Span{root, orders, grpc, db, again}
}

func TestWriteOTLPJSON(t *testing.T) {
	spans := otlpFixture()
	var buf bytes.Buffer
	if err := render.WriteOTLPJSON(&buf, spans); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.DisallowUnknownFields()
	var req xRequest
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("decoding into the strict OTLP mirror: %v\n%s", err, buf.Bytes())
	}

	// One resource per callee, in order of first appearance, each with the
	// devstack scope.
	var services []string
	got := map[string]xSpan{}
	for _, rs := range req.ResourceSpans {
		if len(rs.Resource.Attributes) != 1 || rs.Resource.Attributes[0].Key != "service.name" {
			t.Fatalf("resource attributes = %+v, want service.name", rs.Resource.Attributes)
		}
		services = append(services, *rs.Resource.Attributes[0].Value.StringValue)
		if len(rs.ScopeSpans) != 1 || rs.ScopeSpans[0].Scope.Name != "devstack" {
			t.Fatalf("scopeSpans = %+v, want one with scope devstack", rs.ScopeSpans)
		}
		for _, s := range rs.ScopeSpans[0].Spans {
			got[s.SpanID] = s
		}
	}
	if want := "gateway,orders,payments,postgres"; strings.Join(services, ",") != want {
		t.Errorf("resources = %v, want %s", services, want)
	}
	if len(got) != len(spans) {
		t.Fatalf("%d spans exported, want %d", len(got), len(spans))
	}

	hexID := regexp.MustCompile(`^[0-9a-f]+$`)
	for _, s := range spans {
		o, ok := got[s.SpanID.String()]
		if !ok {
			t.Fatalf("span %s missing", s.SpanID)
		}
		if o.TraceID != s.TraceID.String() || len(o.TraceID) != 32 || !hexID.MatchString(o.TraceID) || len(o.SpanID) != 16 {
			t.Errorf("ids: traceId %q spanId %q", o.TraceID, o.SpanID)
		}
		wantParent := "" // a root has no parentSpanId
		if s.ParentID.IsValid() {
			wantParent = s.ParentID.String()
		}
		if o.ParentSpanID != wantParent {
			t.Errorf("span %s parentSpanId = %q, want %q", s.SpanID, o.ParentSpanID, wantParent)
		}
		if o.Kind != 2 {
			t.Errorf("kind = %d, want 2 (SERVER)", o.Kind)
		}
		if o.StartTimeUnixNano != strconv.FormatInt(s.Start.UnixNano(), 10) || o.EndTimeUnixNano != strconv.FormatInt(s.End().UnixNano(), 10) {
			t.Errorf("times = %s..%s", o.StartTimeUnixNano, o.EndTimeUnixNano)
		}
		if (o.Status != nil) != s.Failed() || o.Status != nil && o.Status.Code != 2 {
			t.Errorf("span %s status = %+v, failed %v", s.SpanID, o.Status, s.Failed())
		}
	}

	for _, tc := range []struct {
		span int
		name string
		attr map[string]string // "" = absent
		msg  string
	}{
		{0, "POST /checkout", map[string]string{
			"http.request.method": "s:POST", "url.path": "s:/checkout", "http.response.status_code": "i:200",
			"network.protocol.name": "s:http", "devstack.caller": "", "devstack.ttfb_ms": "d:1.5",
			"devstack.bytes_in": "i:42", "devstack.bytes_out": "i:1024", "devstack.request_id": "s:req-1",
			"http.request.header.x-tag": "a:s:a,s:b", "http.request.header.accept": "a:s:application/json",
			"http.response.header.content-type": "a:s:application/json", "rpc.grpc.status_code": "",
			"devstack.inferred_parent": "", "error.type": "", "url.query": "s:region=EU", "devstack.link_candidates": "",
		}, ""},
		{1, "GET /orders", map[string]string{
			"http.response.status_code": "i:503", "devstack.caller": "s:gateway", "devstack.faults": "a:s:latency 300ms",
			"error.type": "s:503",
		}, "HTTP 503"},
		{2, "POST /pay.v1.Pay/Charge", map[string]string{
			"rpc.system": "s:grpc", "rpc.grpc.status_code": "i:14", "network.protocol.version": "s:2",
			"devstack.inferred_parent": "b:true", "error.type": "s:14", "devstack.link_candidates": "i:4", "url.query": "",
		}, "gRPC status 14"},
		{3, "tcp", map[string]string{
			"network.transport": "s:tcp", "network.protocol.name": "", "http.request.method": "",
			"http.response.status_code": "", "error.type": "s:connection reset by peer",
		}, "connection reset by peer"},
	} {
		o := got[spans[tc.span].SpanID.String()]
		if o.Name != tc.name {
			t.Errorf("span %d name = %q, want %q", tc.span, o.Name, tc.name)
		}
		for k, want := range tc.attr {
			v, ok := o.attr(k)
			if want == "" && ok {
				t.Errorf("span %d: %s = %v, want absent", tc.span, k, v)
			} else if want != "" && v.String() != want {
				t.Errorf("span %d: %s = %v, want %s", tc.span, k, v, want)
			}
		}
		if tc.msg != "" && o.Status.Message != tc.msg {
			t.Errorf("span %d status message = %q, want %q", tc.span, o.Status.Message, tc.msg)
		}
	}
}

// TestWriteOTLPJSONEncoding checks the JSON types the OTLP encoding
// requires: 64-bit integers as strings, enums as numbers.
func TestWriteOTLPJSONEncoding(t *testing.T) {
	var buf bytes.Buffer
	if err := render.WriteOTLPJSON(&buf, otlpFixture()[:2]); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	span := raw["resourceSpans"].([]any)[0].(map[string]any)["scopeSpans"].([]any)[0].(map[string]any)["spans"].([]any)[0].(map[string]any)
	for _, k := range []string{"startTimeUnixNano", "endTimeUnixNano", "traceId", "spanId"} {
		if _, ok := span[k].(string); !ok {
			t.Errorf("%s is %T, want a JSON string", k, span[k])
		}
	}
	if _, ok := span["kind"].(float64); !ok {
		t.Errorf("kind is %T, want a JSON number", span["kind"])
	}
	for _, a := range span["attributes"].([]any) {
		v := a.(map[string]any)["value"].(map[string]any)
		if iv, ok := v["intValue"]; ok {
			if _, ok := iv.(string); !ok {
				t.Errorf("intValue is %T, want a JSON string", iv)
			}
		}
		if len(v) != 1 {
			t.Errorf("AnyValue %v: want exactly one field set", v)
		}
	}
	if buf.Bytes()[buf.Len()-1] != '\n' {
		t.Error("want a trailing newline (one request per line)")
	}

	buf.Reset()
	if err := render.WriteOTLPJSON(&buf, nil); err != nil || buf.String() != "{\"resourceSpans\":[]}\n" {
		t.Errorf("no spans: %q, %v", buf.String(), err)
	}
}

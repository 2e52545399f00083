package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/devstack/devstack/trace"
)

// OTLP span kinds and status codes (opentelemetry-proto trace/v1). The OTLP
// JSON encoding writes enums as integers.
const (
	otlpKindServer  = 2
	otlpStatusError = 2
)

// WriteOTLPJSON writes spans as one OTLP ExportTraceServiceRequest in the
// OTLP/JSON encoding (the body of a POST to an OTLP/HTTP /v1/traces
// endpoint, or one line of a file the collector's otlpjsonfile receiver
// reads), followed by a newline. Jaeger, Tempo and the OpenTelemetry
// Collector import it.
//
// The encoding is protobuf's JSON mapping with OTLP's deviations: trace and
// span ids are lowercase hex (not base64), enums are integers, and 64-bit
// integers (timestamps, intValue) are decimal strings.
//
// Spans are grouped into one resource per callee (service.name) with the
// instrumentation scope "devstack". Every span is a SERVER span of its
// callee: the proxy sits in front of the callee and sees the request as the
// callee receives it, and most services in a dev stack are not instrumented,
// so these are the only spans they will have. The caller is kept as the
// devstack.caller attribute. (Emitting a CLIENT span on the caller as well
// would double the spans and need span ids the callee never saw.) If a
// service is instrumented, its own spans nest under the proxy's hop, because
// the proxy sent the hop's span id as the traceparent parent-id.
func WriteOTLPJSON(w io.Writer, spans []*trace.Span) error {
	req := otlpRequest{ResourceSpans: []otlpResourceSpans{}}
	byService := make(map[string]int)
	for _, s := range spans {
		svc := s.Callee
		if svc == "" {
			svc = "unknown_service"
		}
		i, ok := byService[svc]
		if !ok {
			i = len(req.ResourceSpans)
			byService[svc] = i
			req.ResourceSpans = append(req.ResourceSpans, otlpResourceSpans{
				Resource:   otlpResource{Attributes: []otlpKeyValue{otlpString("service.name", svc)}},
				ScopeSpans: []otlpScopeSpans{{Scope: otlpScope{Name: "devstack"}}},
			})
		}
		ss := &req.ResourceSpans[i].ScopeSpans[0]
		ss.Spans = append(ss.Spans, toOTLP(s))
	}
	if err := json.NewEncoder(w).Encode(req); err != nil {
		return fmt.Errorf("writing OTLP JSON: %w", err)
	}
	return nil
}

func toOTLP(s *trace.Span) otlpSpan {
	o := otlpSpan{
		TraceID:           s.TraceID.String(),
		SpanID:            s.SpanID.String(),
		Name:              otlpName(s),
		Kind:              otlpKindServer,
		StartTimeUnixNano: strconv.FormatInt(s.Start.UnixNano(), 10),
		EndTimeUnixNano:   strconv.FormatInt(s.End().UnixNano(), 10),
	}
	if s.ParentID.IsValid() {
		o.ParentSpanID = s.ParentID.String()
	}
	a := make([]otlpKeyValue, 0, 12+len(s.ReqHeaders)+len(s.RespHeaders))
	if s.Method != "" {
		a = append(a, otlpString("http.request.method", s.Method))
	}
	if s.Route != "" {
		a = append(a, otlpString("url.path", s.Route))
	}
	if s.Query != "" {
		a = append(a, otlpString("url.query", s.Query))
	}
	if s.Status != 0 {
		a = append(a, otlpInt("http.response.status_code", int64(s.Status)))
	}
	if s.GRPCStatus >= 0 {
		a = append(a, otlpInt("rpc.grpc.status_code", int64(s.GRPCStatus)))
	}
	switch s.Protocol {
	case "tcp":
		a = append(a, otlpString("network.transport", "tcp"))
	case "grpc":
		a = append(a, otlpString("rpc.system", "grpc"), otlpString("network.protocol.name", "http"),
			otlpString("network.protocol.version", "2"))
	case "h2c":
		a = append(a, otlpString("network.protocol.name", "http"), otlpString("network.protocol.version", "2"))
	case "":
	default: // http, websocket, sse: all start as HTTP requests
		a = append(a, otlpString("network.protocol.name", "http"))
	}
	if s.Protocol != "" {
		a = append(a, otlpString("devstack.protocol", s.Protocol))
	}
	if s.Caller != "" {
		a = append(a, otlpString("devstack.caller", s.Caller))
	}
	if s.Inferred {
		a = append(a, otlpBool("devstack.inferred_parent", true))
		if s.Candidates > 0 {
			a = append(a, otlpInt("devstack.link_candidates", int64(s.Candidates)))
		}
	}
	if s.TTFB > 0 {
		a = append(a, otlpDouble("devstack.ttfb_ms", float64(s.TTFB.Microseconds())/1000))
	}
	a = append(a, otlpInt("devstack.bytes_in", s.BytesIn), otlpInt("devstack.bytes_out", s.BytesOut))
	if s.RequestID != "" {
		a = append(a, otlpString("devstack.request_id", s.RequestID))
	}
	if len(s.Faults) > 0 {
		a = append(a, otlpStrings("devstack.faults", s.Faults))
	}
	a = appendOTLPHeaders(a, "http.request.header.", s.ReqHeaders)
	a = appendOTLPHeaders(a, "http.response.header.", s.RespHeaders)
	if s.ReqBody != "" {
		a = append(a, otlpString("devstack.request_body", s.ReqBody))
	}
	if s.RespBody != "" {
		a = append(a, otlpString("devstack.response_body", s.RespBody))
	}
	if s.Failed() {
		errType, msg := otlpError(s)
		a = append(a, otlpString("error.type", errType))
		o.Status = &otlpStatus{Code: otlpStatusError, Message: msg}
	}
	o.Attributes = a
	return o
}

// otlpName is "METHOD route", or the protocol for a hop without a method
// (TCP).
func otlpName(s *trace.Span) string {
	switch {
	case s.Method == "" && s.Protocol != "":
		return s.Protocol
	case s.Method == "":
		return s.Route
	case s.Route == "":
		return s.Method
	}
	return s.Method + " " + s.Route
}

// otlpError returns the error.type attribute (low cardinality) and the
// status message of a failed span.
func otlpError(s *trace.Span) (errType, msg string) {
	switch {
	case s.Error != "":
		return s.Error, s.Error
	case s.Status >= 500:
		return strconv.Itoa(s.Status), fmt.Sprintf("HTTP %d", s.Status)
	}
	return strconv.Itoa(s.GRPCStatus), fmt.Sprintf("gRPC status %d", s.GRPCStatus)
}

// appendOTLPHeaders adds one string-array attribute per header name (the
// semantic conventions' http.request.header.<lowercase name>).
func appendOTLPHeaders(a []otlpKeyValue, prefix string, hs []trace.Header) []otlpKeyValue {
	start := len(a)
	for _, h := range hs {
		key := prefix + strings.ToLower(h.Name)
		found := false
		for i := start; i < len(a); i++ {
			if a[i].Key == key {
				vals := &a[i].Value.ArrayValue.Values
				*vals = append(*vals, otlpAnyValue{StringValue: &h.Value})
				found = true
				break
			}
		}
		if !found {
			a = append(a, otlpStrings(key, []string{h.Value}))
		}
	}
	return a
}

// The types below mirror the OTLP protobuf messages, with JSON names in
// lowerCamelCase as the OTLP JSON encoding requires.

type otlpRequest struct {
	ResourceSpans []otlpResourceSpans `json:"resourceSpans"`
}

type otlpResourceSpans struct {
	Resource   otlpResource     `json:"resource"`
	ScopeSpans []otlpScopeSpans `json:"scopeSpans"`
}

type otlpResource struct {
	Attributes []otlpKeyValue `json:"attributes"`
}

type otlpScopeSpans struct {
	Scope otlpScope  `json:"scope"`
	Spans []otlpSpan `json:"spans"`
}

type otlpScope struct {
	Name string `json:"name"`
}

type otlpSpan struct {
	TraceID           string         `json:"traceId"`
	SpanID            string         `json:"spanId"`
	ParentSpanID      string         `json:"parentSpanId,omitempty"`
	Name              string         `json:"name"`
	Kind              int            `json:"kind"`
	StartTimeUnixNano string         `json:"startTimeUnixNano"`
	EndTimeUnixNano   string         `json:"endTimeUnixNano"`
	Attributes        []otlpKeyValue `json:"attributes,omitempty"`
	Status            *otlpStatus    `json:"status,omitempty"`
}

type otlpStatus struct {
	Message string `json:"message,omitempty"`
	Code    int    `json:"code"`
}

type otlpKeyValue struct {
	Key   string       `json:"key"`
	Value otlpAnyValue `json:"value"`
}

// otlpAnyValue is the AnyValue oneof: exactly one field is set.
type otlpAnyValue struct {
	StringValue *string         `json:"stringValue,omitempty"`
	BoolValue   *bool           `json:"boolValue,omitempty"`
	IntValue    string          `json:"intValue,omitempty"` // int64: a decimal string
	DoubleValue *float64        `json:"doubleValue,omitempty"`
	ArrayValue  *otlpArrayValue `json:"arrayValue,omitempty"`
}

type otlpArrayValue struct {
	Values []otlpAnyValue `json:"values"`
}

func otlpString(k, v string) otlpKeyValue {
	return otlpKeyValue{Key: k, Value: otlpAnyValue{StringValue: &v}}
}

func otlpInt(k string, v int64) otlpKeyValue {
	return otlpKeyValue{Key: k, Value: otlpAnyValue{IntValue: strconv.FormatInt(v, 10)}}
}

func otlpBool(k string, v bool) otlpKeyValue {
	return otlpKeyValue{Key: k, Value: otlpAnyValue{BoolValue: &v}}
}

func otlpDouble(k string, v float64) otlpKeyValue {
	return otlpKeyValue{Key: k, Value: otlpAnyValue{DoubleValue: &v}}
}

func otlpStrings(k string, vs []string) otlpKeyValue {
	arr := &otlpArrayValue{Values: make([]otlpAnyValue, len(vs))}
	for i := range vs {
		arr.Values[i] = otlpAnyValue{StringValue: &vs[i]}
	}
	return otlpKeyValue{Key: k, Value: otlpAnyValue{ArrayValue: arr}}
}

package env

import (
	"strconv"
	"strings"
	"time"

	"github.com/orderpipe/orderpipe/tracing"
)

// LoadTracing reads the standard OpenTelemetry variables that configure
// tracing, for a command whose spans name service (its version
// version). Tracing is off unless OTEL_TRACES_EXPORTER=otlp or an OTLP
// endpoint is set; OTEL_SDK_DISABLED=true turns it off whatever else is
// set. The values are checked only when tracing is on (a cluster-wide
// OTEL_EXPORTER_OTLP_PROTOCOL=grpc must not stop a worker that does not
// trace).
func LoadTracing(e *Env, service, version string) tracing.Config {
	v := readTracing(e, service)
	cfg := tracing.Config{ServiceName: v.service, ServiceVersion: version}
	switch v.exporter {
	case "otlp":
		cfg.Enabled = true
	case "":
		cfg.Enabled = v.base != "" || v.full != ""
	case "none":
	default:
		e.Failf("OTEL_TRACES_EXPORTER", "%q: want otlp or none (no other exporter is built in)", v.exporter)
	}
	if v.disabled || !cfg.Enabled {
		cfg.Enabled = false
		return cfg
	}
	cfg.Endpoint = tracesEndpoint(e, v.base, v.full)
	protocolVar, protocol := "OTEL_EXPORTER_OTLP_PROTOCOL", v.protocol
	if v.tProtocol != "" {
		protocolVar, protocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v.tProtocol
	}
	if protocol != "http/protobuf" {
		e.Failf(protocolVar, "%q: %v", protocol, tracing.ErrUnsupportedProtocol)
	}
	cfg.Headers = pairs(e, "OTEL_EXPORTER_OTLP_HEADERS", v.headers)
	if v.tHeaders != "" {
		cfg.Headers = pairs(e, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", v.tHeaders)
	}
	cfg.Timeout = millis(e, "OTEL_EXPORTER_OTLP_TIMEOUT", v.timeout)
	if v.tTimeout != "" {
		cfg.Timeout = millis(e, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", v.tTimeout)
	}
	cfg.Resource = tracing.Attributes(pairs(e, "OTEL_RESOURCE_ATTRIBUTES", v.resource))
	s, err := tracing.Sampler(v.sampler, v.samplerArg)
	if err != nil {
		e.Failf("OTEL_TRACES_SAMPLER", "%v", err)
	}
	cfg.Sampler = s
	if cfg.ServiceName == "" {
		e.Failf("OTEL_SERVICE_NAME", "empty: the spans need a service name")
	}
	return cfg
}

// tracingVars are the OTEL_* variables as read.
type tracingVars struct {
	disabled                                                bool
	exporter, base, full, protocol, tProtocol, headers      string
	tHeaders, timeout, tTimeout, service, resource, sampler string
	samplerArg                                              string
}

// readTracing reads (and documents, for -h) every variable LoadTracing
// knows, whether tracing is on or not.
func readTracing(e *Env, service string) tracingVars {
	return tracingVars{
		disabled:   e.Bool("OTEL_SDK_DISABLED", false, "true turns tracing off, whatever else is set"),
		exporter:   e.String("OTEL_TRACES_EXPORTER", "", "otlp turns tracing on (spans to the OTLP endpoint); none turns it off; unset, tracing is on only if an OTLP endpoint is set"),
		base:       e.URL("OTEL_EXPORTER_OTLP_ENDPOINT", "", "OTLP/HTTP base URL of the collector (the ADOT sidecar: http://localhost:4318); spans go to its /v1/traces. Setting it turns tracing on"),
		full:       e.URL("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "OTLP/HTTP URL spans are POSTed to, used as is (default "+tracing.EndpointDefault+"); overrides OTEL_EXPORTER_OTLP_ENDPOINT. Setting it turns tracing on"),
		protocol:   e.String("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTLP transport: http/protobuf only (grpc is not built in)"),
		tProtocol:  e.String("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "", "overrides OTEL_EXPORTER_OTLP_PROTOCOL for spans"),
		headers:    e.Secret("OTEL_EXPORTER_OTLP_HEADERS", "key=value pairs, comma-separated, sent with every export (never logged)"),
		tHeaders:   e.Secret("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "overrides OTEL_EXPORTER_OTLP_HEADERS for spans (never logged)"),
		timeout:    e.String("OTEL_EXPORTER_OTLP_TIMEOUT", strconv.Itoa(int(tracing.TimeoutDefault/time.Millisecond)), "bound on one export of spans, retries included, in milliseconds (1 to 60000)"),
		tTimeout:   e.String("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "", "overrides OTEL_EXPORTER_OTLP_TIMEOUT for spans"),
		service:    e.String("OTEL_SERVICE_NAME", service, "service.name of the spans"),
		resource:   e.String("OTEL_RESOURCE_ATTRIBUTES", "", "more resource attributes of the spans: key=value pairs, comma-separated"),
		sampler:    e.String("OTEL_TRACES_SAMPLER", "parentbased_always_on", "which traces are recorded: "+strings.Join(tracing.Samplers, ", ")+" (parentbased_*: the publisher's decision wins)"),
		samplerArg: e.String("OTEL_TRACES_SAMPLER_ARG", "", "the ratio of the traceidratio samplers, from 0 to 1 (default 1)"),
	}
}

// tracesEndpoint is the URL spans go to: the traces endpoint as is, or the
// base endpoint with /v1/traces appended (the specification's rule for
// OTLP/HTTP), or the default.
func tracesEndpoint(e *Env, base, full string) string {
	name, u := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full
	switch {
	case full != "":
	case base != "":
		name, u = "OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimSuffix(base, "/")+"/v1/traces"
	default:
		return tracing.EndpointDefault
	}
	if err := tracing.CheckEndpoint(u); err != nil {
		e.Failf(name, "%v", err)
	}
	return u
}

func pairs(e *Env, name, s string) map[string]string {
	p, err := tracing.Pairs(s)
	if err != nil {
		e.Failf(name, "%v", err)
	}
	return p
}

func millis(e *Env, name, s string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 60000 {
		e.Failf(name, "%q: want a whole number of milliseconds from 1 to 60000", s)
		return tracing.TimeoutDefault
	}
	return time.Duration(n) * time.Millisecond
}

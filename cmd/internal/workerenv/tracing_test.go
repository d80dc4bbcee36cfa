package workerenv

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/tracing"
)

// TestTracingIsOffUnlessTheOTELVariablesTurnItOn: the standard variables
// decide, OTEL_SDK_DISABLED wins, and the endpoint follows the OTLP/HTTP
// rules (the base endpoint gets /v1/traces, the traces endpoint is used as
// is).
func TestTracingIsOffUnlessTheOTELVariablesTurnItOn(t *testing.T) {
	hermeticAWS(t)
	for _, tt := range []struct {
		name         string
		vars         map[string]string
		on           bool
		endpoint     string
		timeout      time.Duration
		service, res string
	}{
		{name: "nothing set", vars: nil},
		{name: "exporter otlp", vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true, endpoint: tracing.EndpointDefault},
		{name: "a base endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, on: true, endpoint: "http://collector:4318/v1/traces"},
		{name: "a traces endpoint, as is", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/otlp"}, on: true, endpoint: "https://b/otlp"},
		{name: "disabled wins", vars: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "exporter none wins over an endpoint", vars: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "off, a protocol we lack is not checked", vars: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
		{name: "timeout, service and resource", vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
			"OTEL_SERVICE_NAME": "billing-worker", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=orders%20team"},
			on: true, endpoint: tracing.EndpointDefault, timeout: 2500 * time.Millisecond, service: "billing-worker", res: "deployment.environment=prod,team=orders team"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := Load(lookupMap(tt.vars))
			if err := w.Check(context.Background()); err != nil {
				t.Fatalf("refused: %v", err)
			}
			tr := w.Tracing
			if tr.Enabled != tt.on {
				t.Fatalf("tracing on = %v, want %v", tr.Enabled, tt.on)
			}
			if !tt.on {
				tp, stop, err := tracing.Start(tr)
				stop()
				if tp != nil || err != nil {
					t.Errorf("Start with tracing off = %v, %v; want no provider", tp, err)
				}
				return
			}
			if tr.Endpoint != tt.endpoint {
				t.Errorf("endpoint %q, want %q", tr.Endpoint, tt.endpoint)
			}
			if want := cmpOr(tt.timeout, tracing.TimeoutDefault); tr.Timeout != want {
				t.Errorf("timeout %s, want %s", tr.Timeout, want)
			}
			if want := cmpOr(tt.service, ServiceName); tr.ServiceName != want {
				t.Errorf("service %q, want %q", tr.ServiceName, want)
			}
			var res []string
			for _, kv := range tr.Resource {
				res = append(res, fmt.Sprintf("%s=%s", kv.Key, kv.Value.String()))
			}
			if got := strings.Join(res, ","); got != tt.res {
				t.Errorf("resource %q, want %q", got, tt.res)
			}
			if tr.Sampler == nil || !strings.HasPrefix(tr.Sampler.Description(), "ParentBased{root:AlwaysOnSampler") {
				t.Errorf("sampler %v, want the default parentbased_always_on", tr.Sampler)
			}
		})
	}
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

// TestBadOTELValuesAreRefusedByName: with tracing on, every value the
// worker cannot honour stops it at start-up with the variable's name, and
// a header's value (a credential, maybe) is never echoed.
func TestBadOTELValuesAreRefusedByName(t *testing.T) {
	hermeticAWS(t)
	on := map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}
	for _, tt := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "0"}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "xray"}, "OTEL_TRACES_SAMPLER"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "team"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr3t%zz"}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{map[string]string{"OTEL_SERVICE_NAME": ""}, "OTEL_SERVICE_NAME"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			vars := maps.Clone(on)
			maps.Copy(vars, tt.vars)
			w := Load(lookupMap(vars))
			err := w.Check(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check() = %v, want a refusal naming %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the refusal echoes a header's value: %v", err)
			}
		})
	}
}

// TestOTLPHeadersAreNeverLogged: the start-up log of the configuration
// (Effective) hides the headers, which may hold a collector's credential.
func TestOTLPHeadersAreNeverLogged(t *testing.T) {
	hermeticAWS(t)
	w := Load(lookupMap(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20s3cr3t"}))
	if err := w.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := w.Tracing.Headers["authorization"]; got != "Bearer s3cr3t" {
		t.Errorf("header %q, want it decoded", got)
	}
	if logged := fmt.Sprint(w.Env.Effective()...); strings.Contains(logged, "s3cr3t") {
		t.Errorf("the configuration log shows a header's value: %s", logged)
	}
}

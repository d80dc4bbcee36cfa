package tracing

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Samplers are the OTEL_TRACES_SAMPLER values Sampler understands (the
// specification's, less the remote ones: jaeger_remote, xray).
var Samplers = []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// Sampler returns the sampler OTEL_TRACES_SAMPLER names, with arg
// (OTEL_TRACES_SAMPLER_ARG) the ratio of the traceidratio ones: from 0 to
// 1, 1 when empty.
func Sampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := 1.0
	if strings.HasSuffix(name, "traceidratio") && strings.TrimSpace(arg) != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("sampler ratio %q: want a number from 0 to 1", arg)
		}
		ratio = r
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_on", "":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("sampler %q: want one of %s", name, strings.Join(Samplers, ", "))
}

// Pairs parses the OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS
// format: key=value pairs separated by commas, values percent-encoded.
// Errors name the pair's position, never its value (a header may be a
// secret).
func Pairs(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, p := range strings.Split(s, ",") {
		if strings.TrimSpace(p) == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("pair %d is not key=value", i+1)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("pair %d (%s): the value is not percent-encoded correctly", i+1, k)
		}
		out[k] = val
	}
	return out, nil
}

// Attributes returns pairs as string attributes, sorted by key.
func Attributes(pairs map[string]string) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(pairs))
	for k, v := range pairs {
		out = append(out, attribute.String(k, v))
	}
	set := attribute.NewSet(out...)
	return set.ToSlice()
}

// ErrUnsupportedProtocol refuses an OTLP protocol other than http/protobuf.
var ErrUnsupportedProtocol = errors.New("only http/protobuf is supported: point the endpoint at the collector's OTLP/HTTP port (4318)")

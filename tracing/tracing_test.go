package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/orderpipe/orderpipe/tracing"
)

// collector is an OTLP/HTTP endpoint that answers each request with the
// next status of answers (200 once they run out) and keeps what it got.
type collector struct {
	mu       sync.Mutex
	answers  []int
	requests int
	spans    []*tracepb.ResourceSpans
	headers  []http.Header
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	c.headers = append(c.headers, r.Header.Clone())
	status := http.StatusOK
	if len(c.answers) > 0 {
		status, c.answers = c.answers[0], c.answers[1:]
	}
	if status == http.StatusOK {
		// The body is an ExportTraceServiceRequest; TracesData is the same on the wire.
		var td tracepb.TracesData
		if err := proto.Unmarshal(body, &td); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.spans = append(c.spans, td.GetResourceSpans()...)
	}
	w.WriteHeader(status)
}

func (c *collector) got() (requests int, names []string, service string, headers []http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range c.spans {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				names = append(names, s.GetName())
			}
		}
	}
	return c.requests, names, service, c.headers
}

func emit(t *testing.T, cfg tracing.Config, names ...string) {
	t.Helper()
	tp, stop, err := tracing.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		_, span := tp.Tracer("test").Start(context.Background(), n)
		span.End()
	}
	stop() // flushes what is queued
}

// TestSpansReachTheCollector: Start's provider sends its spans, at the
// latest when stopped, to the endpoint as OTLP/HTTP protobuf, with the
// service's name and the configured headers; a collector that is briefly
// unavailable (503) is tried again, one that refuses (400) is not.
func TestSpansReachTheCollector(t *testing.T) {
	c := &collector{answers: []int{http.StatusServiceUnavailable}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	cfg := tracing.Config{Enabled: true, Endpoint: srv.URL + "/v1/traces", ServiceName: "orderpipe-worker",
		Headers: map[string]string{"Authorization": "Bearer t"}}
	emit(t, cfg, "one", "two")
	requests, names, service, headers := c.got()
	if requests != 2 || strings.Join(names, ",") != "one,two" || service != "orderpipe-worker" {
		t.Errorf("%d requests brought spans %v of service %q; want a retry after the 503, then one,two of orderpipe-worker", requests, names, service)
	}
	for _, h := range headers {
		if h.Get("Content-Type") != "application/x-protobuf" || h.Get("Authorization") != "Bearer t" {
			t.Errorf("request headers %v", h)
		}
	}

	refusing := &collector{answers: []int{http.StatusBadRequest, http.StatusBadRequest}}
	srv2 := httptest.NewServer(refusing)
	defer srv2.Close()
	cfg.Endpoint = srv2.URL + "/v1/traces"
	emit(t, cfg, "three")
	if requests, names, _, _ := refusing.got(); requests != 1 || len(names) != 0 {
		t.Errorf("a refusing collector got %d requests (%v), want 1: a 400 is not retried", requests, names)
	}
}

// TestAHungCollectorCostsTheExportTimeout: a collector that never answers
// holds the exit's flush for the export's timeout, not longer, and the
// failure reaches the OpenTelemetry error handler (RouteErrors), which
// logs it once however often it happens.
func TestAHungCollectorCostsTheExportTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	var logs bytes.Buffer
	var mu sync.Mutex
	tracing.RouteErrors(slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil)))
	start := time.Now()
	cfg := tracing.Config{Enabled: true, Endpoint: srv.URL, ServiceName: "w", Timeout: 300 * time.Millisecond}
	emit(t, cfg, "lost")
	emit(t, cfg, "lost too")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("two exits took %s with a hung collector; want about two export timeouts (600ms)", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "spans not exported"); n != 1 {
		t.Errorf("%d log lines about failed exports, want 1 (throttled):\n%s", n, logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestLoggerAddsTheTraceOfTheContext: a line logged with a context that
// carries a sampled span gets its trace_id and span_id; one without, none.
func TestLoggerAddsTheTraceOfTheContext(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	var out bytes.Buffer
	log := tracing.Logger(slog.New(slog.NewJSONHandler(&out, nil))).With("handler", "billing")
	ctx, span := tp.Tracer("test").Start(context.Background(), "s")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var in, outside map[string]any
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &in) != nil || json.Unmarshal([]byte(lines[1]), &outside) != nil {
		t.Fatalf("log:\n%s", out.String())
	}
	if in[tracing.LogTraceID] != span.SpanContext().TraceID().String() || in[tracing.LogSpanID] != span.SpanContext().SpanID().String() || in["handler"] != "billing" {
		t.Errorf("line in the span: %v", in)
	}
	if _, ok := outside[tracing.LogTraceID]; ok {
		t.Errorf("line outside any span: %v", outside)
	}
	if tracing.Logger(log) != log {
		t.Error("Logger wrapped a logger it had already wrapped")
	}
}

// Package tracing turns OpenTelemetry tracing on for orderpipe's commands:
// a tracer provider whose spans go, in batches, to an OTLP/HTTP endpoint
// (the AWS Distro for OpenTelemetry collector beside the task, which sends
// them on to X-Ray). The packages that trace (events, worker, handlers,
// store, store/redisstore, mailer) take a trace.TracerProvider and trace
// nothing when it is nil: with tracing off (the default) no span is
// started, no context extracted, no attribute written.
//
// Trace context travels as W3C trace context (traceparent, tracestate):
// in SNS/SQS message attributes of those names, and with outbox rows.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Config configures tracing. The commands fill it from the standard OTEL_*
// variables (cmd/internal/env).
type Config struct {
	// Enabled turns tracing on. Off, Start returns a nil provider.
	Enabled bool
	// Endpoint is the URL spans are POSTed to, OTLP/HTTP with protobuf
	// bodies. Defaults to EndpointDefault (an ADOT collector in the same
	// task).
	Endpoint string
	// Headers are sent with every export. Their values may be secrets
	// (an API key): never logged.
	Headers map[string]string
	// Timeout bounds one export, its retries included. Defaults to
	// TimeoutDefault.
	Timeout time.Duration
	// ServiceName and ServiceVersion name the process in every span's
	// resource. ServiceName is required.
	ServiceName, ServiceVersion string
	// Resource are more resource attributes (OTEL_RESOURCE_ATTRIBUTES).
	Resource []attribute.KeyValue
	// Sampler decides which traces are recorded. Defaults to
	// ParentBased(AlwaysSample): a trace the publisher sampled is sampled
	// everywhere, one it dropped nowhere.
	Sampler sdktrace.Sampler
	// Logger hears a flush at exit that did not finish. Defaults to
	// slog.Default(). (Export failures go to the OpenTelemetry error
	// handler: RouteErrors.)
	Logger *slog.Logger
}

// Defaults and bounds.
const (
	// EndpointDefault is the OTLP/HTTP traces path of a collector on the
	// same host (the ADOT sidecar's).
	EndpointDefault = "http://localhost:4318/v1/traces"
	// TimeoutDefault bounds one export, retries included (the OTLP
	// exporters' default).
	TimeoutDefault = 10 * time.Second
	// BatchDelay is the longest a finished span waits before it is sent.
	BatchDelay = 5 * time.Second
	// QueueSize bounds the spans waiting to be sent. When the collector is
	// slower than the worker, spans beyond it are dropped: tracing never
	// holds a message back.
	QueueSize = 2048
	// BatchSize is the most spans in one export.
	BatchSize = 512
	// ShutdownTimeout bounds the flush of the spans still queued when the
	// process exits, after the consumers drained (WORKER_SHUTDOWN_TIMEOUT,
	// 25 s) and the pool closed (2 s at most): within ECS's 30 s stop
	// timeout. What is not sent by then is dropped.
	ShutdownTimeout = 2 * time.Second
)

// Validate names the first bad field.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.ServiceName == "" {
		return errors.New("tracing: Config.ServiceName is required")
	}
	if c.Endpoint != "" {
		if err := CheckEndpoint(c.Endpoint); err != nil {
			return err
		}
	}
	return nil
}

// CheckEndpoint refuses an endpoint that is not an absolute http(s) URL.
// The error does not echo the URL (it may carry credentials).
func CheckEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("tracing: the OTLP endpoint must be an http:// or https:// URL with a host")
	}
	return nil
}

// spanLimits are the SDK's defaults, set explicitly (the SDK would read
// OTEL_SPAN_*_LIMIT otherwise).
var spanLimits = sdktrace.SpanLimits{
	AttributeValueLengthLimit:   sdktrace.DefaultAttributeValueLengthLimit,
	AttributeValueDepthLimit:    sdktrace.DefaultAttributeValueDepthLimit,
	AttributeCountLimit:         sdktrace.DefaultAttributeCountLimit,
	EventCountLimit:             sdktrace.DefaultEventCountLimit,
	LinkCountLimit:              sdktrace.DefaultLinkCountLimit,
	AttributePerEventCountLimit: sdktrace.DefaultAttributePerEventCountLimit,
	AttributePerLinkCountLimit:  sdktrace.DefaultAttributePerLinkCountLimit,
}

// Start returns the tracer provider cfg asks for, and a func that flushes
// and stops it within ShutdownTimeout. With tracing off the provider is nil
// and stop does nothing. Start contacts nothing.
func Start(cfg Config) (trace.TracerProvider, func(), error) {
	if !cfg.Enabled {
		return nil, func() {}, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = EndpointDefault
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = TimeoutDefault
	}
	if cfg.Sampler == nil {
		cfg.Sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	exp, err := otlptrace.New(context.Background(), newHTTPClient(cfg.Endpoint, cfg.Headers, cfg.Timeout))
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: exporter: %w", err)
	}
	attrs := append([]attribute.KeyValue{}, cfg.Resource...)
	attrs = append(attrs, semconv.ServiceName(cfg.ServiceName))
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	// resource.New with these options reads no environment variable: the
	// commands read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
	res, err := resource.New(context.Background(), resource.WithTelemetrySDK(), resource.WithSchemaURL(semconv.SchemaURL), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// Every option explicit: the SDK's own OTEL_BSP_* and OTEL_TRACES_SAMPLER
	// readings are overridden, so the bounds are the ones documented here.
	bsp := sdktrace.NewBatchSpanProcessor(exp,
		sdktrace.WithBatchTimeout(BatchDelay), sdktrace.WithExportTimeout(cfg.Timeout),
		sdktrace.WithMaxQueueSize(QueueSize), sdktrace.WithMaxExportBatchSize(BatchSize))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(bsp), sdktrace.WithResource(res),
		sdktrace.WithSampler(cfg.Sampler), sdktrace.WithRawSpanLimits(spanLimits))
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("tracing: spans not sent before exit", "err", err, "waited", ShutdownTimeout.String())
		}
	}
	return tp, stop, nil
}

package redisstore

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// traceHook gives every Redis command, pipeline and dial made within a
// trace a client span, "redis <command>", the child of the span its
// context carries; work outside any trace is not traced. A span holds the
// command's name only: never its arguments (keys, values, an AUTH
// password) nor an error's text.
type traceHook struct{ tracer trace.Tracer }

const tracerName = "github.com/orderpipe/orderpipe/store/redisstore"

// start starts a command's span; the hook that calls it defers its End.
//
//nolint:spancheck // returned to the hook, which ends it
func (h traceHook) start(ctx context.Context, name, op string) (context.Context, trace.Span) {
	return h.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemNameRedis, semconv.DBOperationName(op)))
}

// traced reports whether ctx carries a span to be the child of.
func traced(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsValid() }

// record sets a failed call's status: its kind, never its text.
func record(span trace.Span, err error) {
	if err != nil && !errors.Is(err, redis.Nil) { // a missing key is an answer
		kind := "error"
		if _, ok := errors.AsType[redis.Error](err); ok {
			kind = "redis_error"
		}
		span.SetAttributes(attribute.String("error.type", kind))
		span.SetStatus(codes.Error, kind)
	}
}

func (h traceHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !traced(ctx) {
			return next(ctx, network, addr)
		}
		ctx, span := h.start(ctx, "redis connect", "connect")
		defer span.End()
		conn, err := next(ctx, network, addr)
		record(span, err)
		return conn, err
	}
}

func (h traceHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !traced(ctx) {
			return next(ctx, cmd)
		}
		ctx, span := h.start(ctx, "redis "+cmd.Name(), cmd.Name())
		defer span.End()
		err := next(ctx, cmd)
		record(span, err)
		return err
	}
}

func (h traceHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !traced(ctx) {
			return next(ctx, cmds)
		}
		ctx, span := h.start(ctx, "redis pipeline", "pipeline")
		defer span.End()
		span.SetAttributes(semconv.DBOperationBatchSize(len(cmds)))
		err := next(ctx, cmds)
		record(span, err)
		return err
	}
}

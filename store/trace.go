package store

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/resilience"
)

// Tracing (Config.TracerProvider set): pgx's tracer hooks give every
// statement, batch, pool acquire and new connection a client span, the
// child of the span its context carries: a handler's effect (one call of
// its function, see once) is one "postgresql orderpipe_<effect>" span
// under the handler's, with db.stored_procedure.name.
// Work outside any trace (the breaker's probe, the relay looking for unsent
// rows) is not traced: a span needs a parent, so an idle worker sends
// nothing. A span holds the statement's text (our own SQL, with $n
// placeholders), never its arguments, and on failure the error's class
// (resilience.Classify) and SQLSTATE, never its text.

const tracerName = "github.com/orderpipe/orderpipe/store"

// queryTracer is the pool's tracer hook for tp, or nil (no hook) without one.
func queryTracer(tp trace.TracerProvider) pgx.QueryTracer {
	if tp == nil {
		return nil
	}
	return pgxTracer{tracer: tp.Tracer(tracerName)}
}

// pgxTracer implements pgx.QueryTracer, pgx.BatchTracer, pgx.ConnectTracer
// and pgxpool.AcquireTracer.
type pgxTracer struct{ tracer trace.Tracer }

// ourSpan marks a context holding a span this tracer started, so that an
// End call ends that span and never the caller's.
type ourSpan struct{}

// start starts a span below ctx's, if it has one; end ends it, from the
// matching Trace*End hook.
//
//nolint:spancheck // pgx's hooks: started in one, ended in the other
func (t pgxTracer) start(ctx context.Context, name string, attrs ...attribute.KeyValue) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	attrs = append(attrs, semconv.DBSystemNamePostgreSQL)
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return context.WithValue(ctx, ourSpan{}, span)
}

func end(ctx context.Context, err error) {
	span, ok := ctx.Value(ourSpan{}).(trace.Span)
	if !ok {
		return
	}
	if err != nil {
		f := resilience.Classify(err)
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
			span.SetAttributes(semconv.DBResponseStatusCode(pgErr.Code))
		}
		span.SetAttributes(attribute.String("error.type", f.Reason))
		span.SetStatus(codes.Error, f.Class.String()+": "+f.Reason)
	}
	span.End()
}

func (t pgxTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if fn, ok := effectFunction(data.SQL); ok {
		return t.start(ctx, "postgresql "+fn, semconv.DBStoredProcedureName(fn), semconv.DBQueryText(data.SQL))
	}
	return t.start(ctx, "postgresql "+operation(data.SQL), semconv.DBQueryText(data.SQL))
}

// effectFunction is the name of the function sql calls, if it is one of
// orderpipe's (`SELECT r_first, ... FROM orderpipe_reserve(...)`, see once;
// `SELECT orderpipe_record_email(...)`).
func effectFunction(sql string) (string, bool) {
	rest, ok := strings.CutPrefix(sql, "SELECT orderpipe_")
	if !ok && strings.HasPrefix(sql, "SELECT r_") {
		_, rest, ok = strings.Cut(sql, " FROM orderpipe_")
	}
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(rest, "(")
	return "orderpipe_" + name, ok
}

func (t pgxTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	end(ctx, data.Err)
}

func (t pgxTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	stmts := make([]string, 0, data.Batch.Len())
	for _, q := range data.Batch.QueuedQueries {
		stmts = append(stmts, strings.TrimSpace(q.SQL))
	}
	return t.start(ctx, "postgresql BATCH", semconv.DBOperationBatchSize(len(stmts)), semconv.DBQueryText(strings.Join(stmts, ";\n")))
}

func (t pgxTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t pgxTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	end(ctx, data.Err)
}

func (t pgxTracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return t.start(ctx, "postgresql connect")
}

func (t pgxTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	end(ctx, data.Err)
}

func (t pgxTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return t.start(ctx, "postgresql acquire")
}

func (t pgxTracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	end(ctx, data.Err)
}

// operation is a statement's first keyword, upper-cased (SELECT, WITH...).
func operation(sql string) string {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return "query"
	}
	return strings.ToUpper(f[0])
}

// traceID is the id of the sampled trace ctx's span belongs to, for the
// ledger's trace_id, or nil (NULL) when there is none: a trace that is
// not recorded cannot be found, so it is not pointed at.
func traceID(ctx context.Context) any {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		return sc.TraceID().String()
	}
	return nil
}

// traceContext is the W3C trace context of ctx's span (traceparent,
// tracestate), for an outbox row, or NULLs when there is none. The
// sampling decision travels in it: a compensation of an unsampled trace
// stays unsampled.
func traceContext(ctx context.Context) (parent, state any) {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return nullIfEmpty(c["traceparent"]), nullIfEmpty(c["tracestate"])
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

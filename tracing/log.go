package tracing

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// Log keys of the trace a log line belongs to, as the worker's runtime
// writes them too (worker.LogTraceID, worker.LogSpanID).
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
)

// Logger returns log with trace_id and span_id added to every line logged
// with a context that carries a sampled span (the *Context methods: a line
// logged without its context cannot be placed). Lines about no trace are
// unchanged.
func Logger(log *slog.Logger) *slog.Logger {
	if _, ok := log.Handler().(logHandler); ok {
		return log
	}
	return slog.New(logHandler{log.Handler()})
}

type logHandler struct{ next slog.Handler }

func (h logHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		r = r.Clone()
		r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()), slog.String(LogSpanID, sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r) //nolint:wrapcheck // a decorator: the wrapped handler's error is the error
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler { return logHandler{h.next.WithAttrs(as)} }
func (h logHandler) WithGroup(name string) slog.Handler    { return logHandler{h.next.WithGroup(name)} }

// errorLogEvery bounds how often RouteErrors logs: a collector that is down
// fails every export (one per BatchDelay at most) and needs saying once in
// a while, not every time.
const errorLogEvery = time.Minute

// RouteErrors sends OpenTelemetry's internal errors (a failed export, a
// dropped span) to log as warnings, at most one per errorLogEvery, with the
// number left unsaid since. It is process-wide (OpenTelemetry has one error
// handler), so the commands call it once from main; a library must not.
func RouteErrors(log *slog.Logger) {
	otel.SetErrorHandler(&throttled{log: log})
}

type throttled struct {
	log *slog.Logger

	mu       sync.Mutex
	last     time.Time
	unlogged int
}

func (t *throttled) Handle(err error) {
	t.mu.Lock()
	if !t.last.IsZero() && time.Since(t.last) < errorLogEvery {
		t.unlogged++
		t.mu.Unlock()
		return
	}
	n := t.unlogged
	t.last, t.unlogged = time.Now(), 0
	t.mu.Unlock()
	t.log.Warn("tracing: spans not exported; the worker goes on without them", "err", err, "unlogged_since_last", n, "every", errorLogEvery.String())
}

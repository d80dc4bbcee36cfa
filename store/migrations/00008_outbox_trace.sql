-- Traces (OpenTelemetry, W3C trace context; README "Traces").
--
-- outbox.traceparent, outbox.tracestate: the trace context of the handler
-- that wrote the row (inventory, rejecting an order), so that the relay's
-- publish of the compensation continues the order's trace. NULL when the
-- handler was not traced.
--
-- processed_events.trace_id: the trace (32 hex digits) a handler's effect
-- was part of, written by the effect's own statement; `orderctl trace`
-- reads it. NULL when not traced (tracing off, or the trace not sampled).
--
-- Nullable columns without a default: adding them rewrites no row.

-- +goose Up
ALTER TABLE outbox ADD COLUMN traceparent text, ADD COLUMN tracestate text;
ALTER TABLE processed_events ADD COLUMN trace_id text;

-- +goose Down
ALTER TABLE processed_events DROP COLUMN trace_id;
ALTER TABLE outbox DROP COLUMN tracestate, DROP COLUMN traceparent;

package mailer

import (
	"context"
	"errors"
	"net/textproto"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/orderpipe/orderpipe/mailer"

// startSpan starts the span of one send, "smtp send", when tracing and ctx
// carries a span to be the child of (the breaker's probe is not traced).
// The returned func ends it with the server's verdict: accepted,
// refused, outcome_unknown or failed. The span names neither the sender
// nor the recipient, and holds no error text (it names the recipient).
//
//nolint:spancheck // the span is ended by the func returned, at the verdict
func (s *SMTP) startSpan(ctx context.Context) (context.Context, func(err error, reused bool)) {
	if s.tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, func(error, bool) {}
	}
	ctx, span := s.tracer.Start(ctx, "smtp send", trace.WithSpanKind(trace.SpanKindClient))
	return ctx, func(err error, reused bool) {
		outcome := verdict(err)
		span.SetAttributes(attribute.String("smtp.outcome", outcome), attribute.Bool("smtp.session_reused", reused))
		if err != nil {
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
	}
}

func verdict(err error) string {
	switch {
	case err == nil:
		return "accepted"
	case errors.Is(err, ErrOutcomeUnknown):
		return "outcome_unknown"
	}
	if _, refused := errors.AsType[*textproto.Error](err); refused {
		return "refused"
	}
	return "failed"
}

// Package worker is a generic SQS consumer runtime: long polling, batch
// receive, a bounded number of messages in flight, per-message timeouts, a
// visibility heartbeat for slow handlers, retries scheduled through
// ChangeMessageVisibility, immediate dead-lettering of permanent failures and
// batched deletes after success. It knows nothing about the product it
// serves: metrics go through an Observer, the dead-letter attributes take a
// configurable prefix.
//
// The one rule it never bends: a message is deleted only after its handler
// returned nil (or after it was copied to the DLQ). When in doubt, a
// redelivery is preferred to a loss; handlers must be idempotent.
package worker

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Message is one received SQS message.
type Message struct {
	ID           string
	Body         []byte
	Attributes   map[string]string // message attributes with string (and number) values; binary ones are not here
	ReceiveCount int               // ApproximateReceiveCount: 1 on the first delivery
	SentAt       time.Time

	receipt string
	// sqsAttrs are the message attributes as received, binary ones included
	// (Attributes leaves those out): a dead-lettered copy carries them
	// unchanged, with their types.
	sqsAttrs map[string]sqstypes.MessageAttributeValue
	logAttrs []any
}

// sqsAttributes returns the attributes to copy to the DLQ: those received,
// or, for a Message not built from a receive, Attributes as strings.
func (m *Message) sqsAttributes() map[string]sqstypes.MessageAttributeValue {
	if m.sqsAttrs != nil {
		return m.sqsAttrs
	}
	out := make(map[string]sqstypes.MessageAttributeValue, len(m.Attributes))
	for k, v := range m.Attributes {
		out[k] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	return out
}

type messageKey struct{}

// FromContext returns the message a handler's context belongs to, for code
// below the handler that needs the delivery (its receive count, a token
// unique to this receive).
func FromContext(ctx context.Context) (*Message, bool) {
	m, ok := ctx.Value(messageKey{}).(*Message)
	return m, ok
}

// NewContext returns ctx carrying m, as the runtime gives it to handlers:
// for middleware tests and for code that runs a Handler itself.
func NewContext(ctx context.Context, m *Message) context.Context {
	return context.WithValue(ctx, messageKey{}, m)
}

// ReceiptHandle is the handle of this delivery, for middleware that talks to
// SQS about it (the runtime settles the message itself).
func (m *Message) ReceiptHandle() string { return m.receipt }

// Annotate adds key/value pairs to every log line the runtime writes about
// this message (a business id, say). Handlers call it once they know them.
func (m *Message) Annotate(kv ...any) { m.logAttrs = append(m.logAttrs, kv...) }

// Handler processes one message. Returning nil acknowledges it (it is
// deleted); any other error schedules a retry unless it is Permanent.
type Handler interface {
	Handle(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m *Message) error { return f(ctx, m) }

// Middleware wraps a Handler. Chain applies them so that the first one listed
// is the outermost.
type Middleware func(next Handler) Handler

// Chain wraps h in the middlewares, first listed outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for _, mw := range slices.Backward(mws) {
		h = mw(h)
	}
	return h
}

func (m *Message) logger(l *slog.Logger) *slog.Logger {
	return l.With("message_id", m.ID, "receive_count", m.ReceiveCount).With(m.logAttrs...)
}

package handlers

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/tick"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/worker"
)

// Outcome is what the idempotency keys say about one delivery.
type Outcome int

// Outcomes of KeyStore.Begin.
const (
	Acquired Outcome = iota // first copy: this delivery runs the handler
	Done                    // a copy with this payload completed: acknowledge
	Busy                    // a copy with this payload is running elsewhere: come back later
	Conflict                // the event_id was used with a different payload
)

func (o Outcome) String() string {
	return [...]string{"acquired", "done", "busy", "conflict"}[o]
}

// Lease is the result of KeyStore.Begin; the KeyStore owns its fields.
type Lease struct {
	Outcome Outcome
	// Remaining is the holder's lease left, when Busy.
	Remaining   time.Duration
	Key         string
	Token       string
	Fingerprint string
}

// ErrLeaseLost is wrapped by KeyStore.Renew when the lease has run out.
var ErrLeaseLost = errors.New("idempotency lease lost")

// KeyStore is the fast path of idempotency (Redis): an in-progress lease
// that keeps concurrent copies from running the handler twice, and a
// completed key that acknowledges known duplicates without the database.
// Complete may return before the key says done (Redis's is written behind,
// batched with others): a copy arriving meanwhile finds the lease held and
// comes back later.
type KeyStore interface {
	Begin(ctx context.Context, handler string, id events.EventID, fingerprint string) (Lease, error)
	Renew(ctx context.Context, l Lease) error
	Complete(ctx context.Context, l Lease) error
	Release(ctx context.Context, l Lease) error
	LeaseTTL() time.Duration
}

// Idempotent runs next at most once per (handler, event) as far as the key
// store can tell. A conflicting payload is events.ErrConflict (permanent); a
// copy running elsewhere is a resilience.HeldError (come back later).
//
// The key store is a shortcut, never the guarantee: the handlers write their
// ledger marker (with the payload fingerprint) in the transaction of their
// effect. When the key store fails or its breaker is open, the event runs
// anyway (outcome "bypass") and the ledger stops a second effect or a
// conflicting payload.
func Idempotent(keys KeyStore, handler string, log *slog.Logger, m *metrics.Metrics, next EventFunc) EventFunc {
	m = metrics.Or(m)
	count := func(o string) { m.IdempotencyOutcomes.WithLabelValues(handler, o).Inc() }
	return func(ctx context.Context, ev events.Event) error {
		fp := events.Fingerprint(ev)
		ctx = events.WithFingerprint(ctx, ev.EventID, fp) // the ledger's, below
		lease, err := keys.Begin(ctx, handler, ev.EventID, hex.EncodeToString(fp[:]))
		if err != nil {
			count("bypass")
			noteOutcome(ctx, "bypass")
			return next(ctx, ev)
		}
		count(lease.Outcome.String())
		noteOutcome(ctx, lease.Outcome.String())
		switch lease.Outcome {
		case Done:
			return nil
		case Conflict:
			return fmt.Errorf("event %s: %w", ev.EventID, events.ErrConflict)
		case Busy:
			return &resilience.HeldError{Remaining: lease.Remaining, ByOther: true,
				Err: fmt.Errorf("event %s: another copy is being handled", ev.EventID)}
		case Acquired:
			// This delivery holds the lease: run the handler.
		}
		stop := renewWhileRunning(ctx, keys, lease, ev.Order.OrderID, log)
		err = next(ctx, ev)
		stop()
		// Bookkeeping after the effect must not inherit a cancelled context:
		// the effect is committed (or not) either way.
		dctx, stop := worker.Detached(ctx)
		defer stop()
		bctx, cancel := context.WithTimeout(dctx, time.Second)
		defer cancel()
		if err != nil {
			if rerr := keys.Release(bctx, lease); rerr != nil {
				log.DebugContext(ctx, "release idempotency lease", "err", rerr, "order_id", ev.Order.OrderID)
			}
			return err
		}
		if cerr := keys.Complete(bctx, lease); cerr != nil {
			log.DebugContext(ctx, "record idempotency key", "err", cerr, "order_id", ev.Order.OrderID)
		}
		return nil
	}
}

// noteOutcome records the key store's verdict on the handler's span, when
// one is recording (nothing is built otherwise).
func noteOutcome(ctx context.Context, outcome string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("idempotency", outcome))
	}
}

// renewWhileRunning renews the lease every third of its TTL until stop.
// Nothing runs for the many handlers done sooner (tick.Every).
func renewWhileRunning(ctx context.Context, keys KeyStore, l Lease, orderID string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var lost atomic.Bool
	stopTicks := tick.Every(keys.LeaseTTL()/3, func() {
		if lost.Load() {
			return
		}
		if err := keys.Renew(ctx, l); errors.Is(err, ErrLeaseLost) {
			// Another copy may start now; the database ledger keeps the
			// effect single.
			lost.Store(true)
			log.WarnContext(ctx, "idempotency lease lost while handling", "key", l.Key, "order_id", orderID)
		}
	})
	return func() { cancel(); stopTicks() }
}

package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/store"
)

// Outbox relay timing. Every wait of the relay is bounded by one of these.
const (
	// relayIdle is how long the relay sleeps when the outbox is empty; it
	// doubles with every empty look, up to relayIdleMax, and starts over
	// after a publish: an idle pipeline costs the database one statement
	// every relayIdleMax per worker, and a compensation waits at most that.
	relayIdle    = 200 * time.Millisecond
	relayIdleMax = 2 * time.Second
	// relayFailingWait is how long it sleeps after a failure.
	relayFailingWait = time.Second
	// relayBatch is how many rows one relay step publishes (one SNS
	// PublishBatch).
	relayBatch = 10
	// publishTimeout bounds one publish of a batch, the SDK's retries
	// included.
	publishTimeout = 10 * time.Second
	// relayLease is how long a relay holds the rows it publishes: a relay
	// that died mid-publish leaves them to another after this.
	relayLease = 3 * publishTimeout
	// bookkeepingTimeout bounds marking rows sent or giving them back.
	bookkeepingTimeout = 5 * time.Second
)

// newSNSBreaker is the relay's own circuit breaker: SNS failing says nothing
// about the database, so it must not count against the database's breaker
// (which would stop every consumer).
func newSNSBreaker(ctx context.Context, log *slog.Logger, m *metrics.Metrics) *resilience.Breaker {
	return resilience.NewBreaker(ctx, resilience.BreakerConfig{
		Name: "sns", Failures: 5, OpenFor: 5 * time.Second, Logger: log, Metrics: m,
		Effect: "the outbox relay pauses; compensations wait in the outbox",
	})
}

// relay publishes the outbox to the topic until ctx is done. Every worker
// runs one; concurrent relays lease different rows.
func relay(ctx context.Context, outbox *store.Outbox, pub *events.Publisher, sns *resilience.Breaker, m *metrics.Metrics, log *slog.Logger) {
	failing := false
	idle := relayIdle
	for {
		n, err := relayOnce(ctx, outbox, pub, sns, m)
		wait := idle
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				log.Warn("outbox relay failing; unsent events wait in the outbox", "err", err)
			}
			failing, wait = true, relayFailingWait
		case failing:
			log.Info("outbox relay publishing again")
			failing = false
		}
		if n > 0 {
			idle = relayIdle
			continue
		}
		idle = min(2*idle, relayIdleMax)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// relayOnce leases a batch, publishes it through the SNS breaker within
// publishTimeout, and marks it sent; it returns how many rows it published.
func relayOnce(ctx context.Context, outbox *store.Outbox, pub *events.Publisher, sns *resilience.Breaker, m *metrics.Metrics) (int, error) {
	msgs, err := outbox.Lease(ctx, relayBatch, relayLease)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	ids := make([]int64, len(msgs))
	raw := make([]events.RawMessage, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
		raw[i] = events.RawMessage{Body: m.Body, EventType: m.EventType, SchemaVersion: events.SchemaVersion,
			EventID: m.EventID, OrderID: m.OrderID, TraceContext: m.TraceContext()}
	}
	err = sns.Do(func() error {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		_, err := pub.PublishRaw(pctx, raw)
		return err
	})
	// Bookkeeping finishes even when ctx is cancelled, within its own bound.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if err != nil {
		m.OutboxPublishFailures.Inc()
		if rerr := outbox.Release(bctx, ids); rerr != nil {
			err = errors.Join(err, rerr) // the lease runs out instead
		}
		return 0, fmt.Errorf("publish %d outbox events: %w", len(msgs), err)
	}
	if err := outbox.MarkSent(bctx, ids); err != nil {
		return 0, fmt.Errorf("published, but will publish again after the lease: %w", err)
	}
	m.OutboxPublished.Add(float64(len(msgs)))
	return len(msgs), nil
}

package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/store"
)

// relayIdle is how long the relay sleeps when the outbox is empty (or
// another worker holds it).
const relayIdle = 200 * time.Millisecond

// relay publishes the outbox to the topic until ctx is done. Every worker
// runs one; the advisory lock lets one at a time through, so the outbox goes
// out in order and a dead relay's place is taken at once.
func relay(ctx context.Context, db *store.DB, pub *events.Publisher, log *slog.Logger) {
	failing := false
	for {
		n, err := db.RelayOutbox(ctx, 10, func(msgs []store.OutboxMessage) error {
			raw := make([]events.RawMessage, len(msgs))
			for i, m := range msgs {
				raw[i] = events.RawMessage{Body: m.Body, EventType: m.EventType, SchemaVersion: events.SchemaVersion}
			}
			_, err := pub.PublishRaw(ctx, raw)
			return err
		})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !errors.Is(err, store.ErrRelayBusy):
			if !failing {
				log.Warn("outbox relay failing; unsent events wait in the outbox", "err", err)
			}
			failing = true
		case err == nil && failing:
			log.Info("outbox relay publishing again")
			failing = false
		}
		if n > 0 {
			metrics.OutboxPublished.Add(float64(n))
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(relayIdle):
		}
	}
}

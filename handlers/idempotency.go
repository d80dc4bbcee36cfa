package handlers

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/orderpipe/orderpipe/events"
)

// KeyStore is the fast path of idempotency (Redis): completed events are
// acknowledged without touching the database.
type KeyStore interface {
	Done(ctx context.Context, handler string, id events.EventID) (bool, error)
	MarkDone(ctx context.Context, handler string, id events.EventID) error
}

// Idempotent skips events the key store knows to be done and records the
// ones next completes. The database ledger stays the guarantee: when the key
// store fails, the event runs anyway and the ledger stops a second effect.
// Failures are logged when the key store goes down and when it comes back,
// not once per message.
func Idempotent(keys KeyStore, handler string, log *slog.Logger, next EventFunc) EventFunc {
	var down atomic.Bool
	note := func(err error) {
		switch {
		case err != nil && down.CompareAndSwap(false, true):
			log.Warn("idempotency keys unavailable; relying on the database ledger alone", "handler", handler, "err", err)
		case err == nil && down.CompareAndSwap(true, false):
			log.Info("idempotency keys available again", "handler", handler)
		}
	}
	return func(ctx context.Context, ev events.Event) error {
		done, err := keys.Done(ctx, handler, ev.EventID)
		note(err)
		if done {
			return nil
		}
		if err := next(ctx, ev); err != nil {
			return err
		}
		note(keys.MarkDone(ctx, handler, ev.EventID))
		return nil
	}
}

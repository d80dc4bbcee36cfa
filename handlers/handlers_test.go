package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/worker"
)

// TestOutcome pins the one mapping from what an error means to what the
// runtime does with the message.
func TestOutcome(t *testing.T) {
	const early, late = 1, 3 // receive counts
	held := func(d time.Duration, byOther bool) error {
		return fmt.Errorf("notify: %w", &resilience.HeldError{Remaining: d, ByOther: byOther, Err: errors.New("claimed")})
	}
	tests := []struct {
		name      string
		receives  int
		err       error
		permanent string        // the DLQ reason, if dead-lettered
		after     time.Duration // the redelivery delay asked for, if any
	}{
		{name: "done", receives: early, err: nil},
		{name: "an invalid event", receives: early, err: &events.ValidationError{Reason: events.ReasonMissingField}, permanent: "missing_field"},
		{name: "an unknown SKU, whichever handler found it", receives: early, err: fmt.Errorf("bill order o: %w", events.UnknownSKU("NOPE")), permanent: "unknown_sku"},
		{name: "a conflicting payload", receives: early, err: fmt.Errorf("ledger: %w", events.ErrConflict), permanent: "idempotency_conflict"},
		{name: "a constraint violation", receives: early, err: &pgconn.PgError{Code: "23505"}, permanent: "constraint_violation"},
		{name: "an SMTP refusal", receives: early, err: &textproto.Error{Code: 550}, permanent: "smtp_rejected"},
		{name: "held by another: an early look comes back soon", receives: early, err: held(90*time.Second, true), after: 5 * time.Second},
		{name: "held by another: at least a second", receives: early, err: held(100*time.Millisecond, true), after: time.Second},
		{name: "held by another: later looks wait the holder out", receives: late, err: held(90*time.Second, true), after: 91 * time.Second},
		{name: "held by another: never sooner than the short wait", receives: late, err: held(100*time.Millisecond, true), after: 5 * time.Second},
		{name: "this delivery's kept claim: back exactly after it", receives: early, err: held(2*time.Minute, false), after: 2 * time.Minute},
		{name: "a transient failure: the redelivery policy decides", receives: early, err: &pgconn.PgError{Code: "40001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := worker.NewContext(context.Background(), &worker.Message{ReceiveCount: tt.receives})
			got := outcome(ctx, tt.err)
			if (got == nil) != (tt.err == nil) {
				t.Fatalf("outcome(%v) = %v", tt.err, got)
			}
			reason, permanent := worker.PermanentReason(got)
			after, later := worker.RetryAfterDelay(got)
			if reason != tt.permanent || permanent != (tt.permanent != "") {
				t.Errorf("dead-letter reason %q (%v), want %q", reason, permanent, tt.permanent)
			}
			if after != tt.after || later != (tt.after != 0) {
				t.Errorf("retry after %v (%v), want %v", after, later, tt.after)
			}
			if tt.err != nil && !errors.Is(got, tt.err) {
				t.Errorf("the outcome lost the error: %v", got)
			}
		})
	}
}

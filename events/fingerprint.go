package events

import (
	"context"
	"crypto/sha256"
	"encoding/json"
)

// Fingerprint identifies an event's content, so that two messages with one
// event_id can be told apart: the same fingerprint is a duplicate, a
// different one is a conflict. It is the SHA-256 of the event's canonical
// JSON (Go's encoding of the decoded struct, with occurred_at in UTC), so
// re-serialising the same event (key order, whitespace, time zone) does not
// change it.
func Fingerprint(ev Event) [sha256.Size]byte {
	ev.OccurredAt = ev.OccurredAt.UTC()
	b, err := json.Marshal(ev)
	if err != nil {
		// Event holds only strings, ints and a time: Marshal cannot fail.
		panic("events: fingerprint: " + err.Error())
	}
	return sha256.Sum256(b)
}

// ErrConflict is wrapped by errors that found a second event with a known
// event_id and a different payload. Such an event is never applied: it is
// permanent, with reason ReasonConflict.
var ErrConflict error = conflictError{}

type conflictError struct{}

func (conflictError) Error() string { return "event_id reused with a different payload" }

// PermanentReason says that no retry can mend a conflict.
func (conflictError) PermanentReason() string { return string(ReasonConflict) }

// fingerprintKey carries a fingerprint in a context (WithFingerprint).
type fingerprintKey struct{}

type carriedFingerprint struct {
	id EventID
	fp [sha256.Size]byte
}

// WithFingerprint returns ctx carrying fp as the fingerprint of the event
// id, so that the code an event passes through (the idempotency keys, then
// the store's ledger) computes it once: it is a JSON encoding and a hash.
func WithFingerprint(ctx context.Context, id EventID, fp [sha256.Size]byte) context.Context {
	return context.WithValue(ctx, fingerprintKey{}, carriedFingerprint{id: id, fp: fp})
}

// FingerprintOf is Fingerprint(ev), taken from ctx when it carries ev's
// (WithFingerprint with ev's event_id).
func FingerprintOf(ctx context.Context, ev Event) [sha256.Size]byte {
	if c, ok := ctx.Value(fingerprintKey{}).(carriedFingerprint); ok && c.id == ev.EventID {
		return c.fp
	}
	return Fingerprint(ev)
}

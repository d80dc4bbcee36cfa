package events

import (
	"context"
	"testing"
)

// TestFingerprintOfTakesTheCarriedOne: a context carrying an event's
// fingerprint answers for that event_id only; any other event is hashed.
func TestFingerprintOfTakesTheCarriedOne(t *testing.T) {
	ev := Event{EventID: "11111111-1111-4111-8111-111111111111", EventType: OrderPlaced, SchemaVersion: SchemaVersion}
	other := ev
	other.EventID = "22222222-2222-4222-8222-222222222222"
	marker := [32]byte{1, 2, 3} // not a real hash: shows where the answer came from
	ctx := WithFingerprint(context.Background(), ev.EventID, marker)
	if got := FingerprintOf(ctx, ev); got != marker {
		t.Errorf("FingerprintOf(the carried event) = %x, want the carried %x", got, marker)
	}
	if got := FingerprintOf(ctx, other); got != Fingerprint(other) {
		t.Errorf("FingerprintOf(another event) = %x, want its own %x", got, Fingerprint(other))
	}
	if got := FingerprintOf(context.Background(), ev); got != Fingerprint(ev) {
		t.Errorf("FingerprintOf without one carried = %x, want %x", got, Fingerprint(ev))
	}
}

package dlq_test

import (
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/dlq"
)

// TestEventTimeIsTheEarlierOfTheEventAndTheLetter: a redrive judges a
// letter by the earliest time its event may have been handled: the
// event's occurred_at when the body is an event, else (or when SQS's
// clock says earlier) the letter's SentTimestamp.
func TestEventTimeIsTheEarlierOfTheEventAndTheLetter(t *testing.T) {
	sent := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		body   string
		wantID string
		want   time.Time
	}{
		{"an event, older than its letter", `{"event_id":"e1","occurred_at":"2026-11-01T08:00:00Z"}`, "e1", time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)},
		{"an event stamped after its letter (a clock ahead)", `{"event_id":"e2","occurred_at":"2026-11-21T08:00:00+02:00"}`, "e2", sent},
		{"an event without occurred_at", `{"event_id":"e3"}`, "e3", sent},
		{"not JSON", `not json at all`, "", sent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, at := dlq.Letter{ID: "m", Body: tt.body, SentAt: sent}.EventTime()
			if id != tt.wantID || !at.Equal(tt.want) {
				t.Errorf("EventTime() = %q, %s; want %q, %s", id, at, tt.wantID, tt.want)
			}
		})
	}
}

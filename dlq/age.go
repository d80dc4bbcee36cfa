package dlq

import (
	"encoding/json"
	"time"
)

// EventTime is when the letter's event may first have been handled, as
// far as the letter tells: the earlier of its event's occurred_at (read
// from the body, when the body is an event) and the letter's
// SentTimestamp. A redrive compares it with the ledger's retention
// (RedriveConfig.NotBefore). eventID is the body's event_id, or empty.
func (l Letter) EventTime() (eventID string, at time.Time) {
	var ev struct {
		EventID    string    `json:"event_id"`
		OccurredAt time.Time `json:"occurred_at"`
	}
	at = l.SentAt
	if json.Unmarshal([]byte(l.Body), &ev) == nil {
		eventID = ev.EventID
		if !ev.OccurredAt.IsZero() && (at.IsZero() || ev.OccurredAt.Before(at)) {
			at = ev.OccurredAt.UTC()
		}
	}
	return eventID, at
}

// Refusal is a dead letter a redrive left in the DLQ because its event is
// older than RedriveConfig.NotBefore.
type Refusal struct {
	ID      string    // the letter's message id
	EventID string    // its event's id, when the body names one
	At      time.Time // EventTime
}

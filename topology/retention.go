package topology

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The ledger's retention rule. A ledger row (and an email claim, and a
// sent outbox row) may go only when no copy of its event can still reach
// a handler; until then a copy must find it. A copy can come from:
//
//	the queue      SQS keeps a message for the queue's retention (4 days)
//	the DLQ        a dead letter waits for the DLQ's retention (14 days),
//	               then a redrive puts a copy back in the queue, where it
//	               can wait the queue's retention again
//	the shop       a republish of an event it already published (the
//	               shop's own window, which the topology cannot know)
//
// So the retention's default is the DLQ's retention plus the queue's plus
// RetentionMargin (19 days with the declared topology), and the worker
// refuses one shorter than the DLQ's retention plus the margin (15 days):
// a dead letter SQS still holds must stay redrivable for most of its life.
// A redrive checks the rest (RedriveWindow): a dead letter whose event is
// older than the retention minus the queue's retention minus the margin
// is refused, since its copy could wait in the queue until after its
// ledger rows are gone.
//
// A copy that arrives after its rows are gone is not recognised: it is
// handled as a new event. That is the rule's price, and why a redrive
// refuses what could arrive that late.

// RetentionMargin covers what the rule's other terms do not: clocks that
// disagree (the shop's occurred_at, SQS's timestamps, the database's
// now()), the maintenance interval, and the time an operator takes.
const RetentionMargin = 24 * time.Hour

// QueueRetention is how long SQS keeps a message in a queue.
func (t Topology) QueueRetention() time.Duration {
	return time.Duration(t.MessageRetentionSeconds) * time.Second
}

// DLQRetention is how long SQS keeps a dead letter.
func (t Topology) DLQRetention() time.Duration {
	return time.Duration(t.DLQMessageRetentionSeconds) * time.Second
}

// LedgerRetention returns the retention rule's default and its minimum
// for this topology (see above).
func (t Topology) LedgerRetention() (def, minimum time.Duration) {
	return t.DLQRetention() + t.QueueRetention() + RetentionMargin, t.DLQRetention() + RetentionMargin
}

// CheckLedgerRetention refuses a retention shorter than the rule's
// minimum, saying why.
func (t Topology) CheckLedgerRetention(r time.Duration) error {
	if _, minimum := t.LedgerRetention(); r < minimum {
		return fmt.Errorf("%s is shorter than the DLQ's retention (%s) plus a margin of %s: a dead letter SQS still holds could be redriven after its ledger rows were removed, and applied twice; want %s or more",
			FormatDays(r), FormatDays(t.DLQRetention()), FormatDays(RetentionMargin), FormatDays(minimum))
	}
	return nil
}

// RedriveWindow is how old an event may be for a redrive of its dead
// letter to be safe under retention r: its copy may wait in the queue for
// the queue's retention before a worker takes it, and its ledger rows must
// still be there then.
func (t Topology) RedriveWindow(r time.Duration) time.Duration {
	return max(r-t.QueueRetention()-RetentionMargin, 0)
}

// ParseDays parses a duration written in days ("19d") or as a Go duration
// ("456h", "90s").
func ParseDays(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n <= 0 || n > 3650 {
			return 0, fmt.Errorf("%q: want a number of days from 0 to 3650, such as 19d", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want days (19d) or a positive duration (456h)", s)
	}
	return d, nil
}

// FormatDays writes d in days when it is whole days ("19d"), else as a Go
// duration.
func FormatDays(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

package env

import (
	"time"

	"github.com/orderpipe/orderpipe/topology"
)

// LoadRetention reads LEDGER_RETENTION, which the worker (its retention
// maintenance) and orderctl (a redrive's age check) share: how long the
// processed_events ledger, settled email claims and sent outbox rows are
// kept. The default and the minimum come from the topology's queue and DLQ
// retention (topology.Topology.LedgerRetention); a shorter value is
// refused, naming the variable, since a dead letter SQS still holds could
// then be redriven after its ledger rows were gone and applied twice.
func LoadRetention(e *Env, top topology.Topology) time.Duration {
	def, minimum := top.LedgerRetention()
	s := e.String("LEDGER_RETENTION", topology.FormatDays(def),
		"how long the processed_events ledger, settled email claims and sent outbox rows are kept, in days (19d) or as a duration; at least the DLQ's retention plus a day ("+
			topology.FormatDays(minimum)+"); the default is the DLQ's retention plus the queue's plus a day. A copy of an event arriving later than this is handled as new")
	r, err := topology.ParseDays(s)
	if err != nil {
		e.Failf("LEDGER_RETENTION", "%v", err)
		return def
	}
	if err := top.CheckLedgerRetention(r); err != nil {
		e.Failf("LEDGER_RETENTION", "%v", err)
		return def
	}
	return r
}

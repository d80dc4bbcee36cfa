package drill

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orderpipe/orderpipe/internal/faults"
)

// The unclean faults: what production's networks do, staged on the
// workers' paths (network.go) while the load flows.

// Settings of the unclean scenarios.
const (
	// dbLatency is what db-latency adds to every database round trip: a
	// proxy queueing requests through a failover.
	dbLatency = 50 * time.Millisecond
	// smtpReplyDelay is what smtp-slow adds to every SMTP reply.
	smtpReplyDelay = 5 * time.Second
	// commitCutRate is the share of COMMITs db-reset-at-commit cuts.
	commitCutRate = 0.1
	// awsErrorRate is the share of SQS and SNS calls aws-errors fails, and
	// of DeleteMessageBatch entries it answers as failed.
	awsErrorRate = 0.1
	// hangDetectTarget is the promise of the hang scenarios: the breaker
	// sees a hung dependency within this of the hang's start.
	hangDetectTarget = 10 * time.Second
	// keepRate is the share of the offered rate the handlers a fault must
	// not touch keep up during it.
	keepRate = 0.9
	// awsRecoveryTarget bounds aws-blackhole's recovery: a receive caught
	// in the hang is abandoned 10 s after its long poll (2 s in the drill)
	// should have ended; the next one is answered.
	awsRecoveryTarget = 2*time.Second + 10*time.Second + 3*time.Second
)

// stagedFault is the fault an unclean scenario stages: its default length,
// what it is, and what injects it (network.heal lifts every fault).
type stagedFault struct {
	length time.Duration
	what   string
	inject func() error
	// recovers is true when the scenario measures recovery from the heal:
	// the path hung, so the first order after it is the figure.
	recovers bool
}

// networkFault is sc's fault; nil for the clean scenarios.
func (d *drill) networkFault(sc string) *stagedFault {
	n := &d.net
	switch sc {
	case DBBlackhole:
		return &stagedFault{30 * time.Second, "the database path forwards nothing and resets nothing", n.db.Blackhole, true}
	case DBLatency:
		return &stagedFault{30 * time.Second, fmt.Sprintf("+%s per database round trip", dbLatency),
			func() error { return n.db.Latency(faults.Downstream, dbLatency, 0) }, false}
	case DBResetAtCommit:
		return &stagedFault{20 * time.Second, fmt.Sprintf("%.0f %% of commits cut after the server decided them", 100*commitCutRate),
			func() error { n.cutter.SetRate(commitCutRate); return nil }, false}
	case RedisBlackhole:
		return &stagedFault{20 * time.Second, "the Redis path forwards nothing", n.redis.Blackhole, false}
	case SMTPResetAfterData:
		return &stagedFault{20 * time.Second, "the SMTP server reads each message's DATA and closes before its verdict",
			func() error { n.smtp.SetMode(faults.SMTPDropBeforeVerdict); return nil }, false}
	case SMTPSlow:
		return &stagedFault{30 * time.Second, fmt.Sprintf("%s per SMTP reply", smtpReplyDelay),
			func() error { return n.email.Latency(faults.Downstream, smtpReplyDelay, 0) }, false}
	case AWSErrors:
		return &stagedFault{30 * time.Second, fmt.Sprintf("%.0f %% of SQS/SNS calls answer 500, 503 or throttling; %.0f %% of batch-delete entries fail", 100*awsErrorRate, 100*awsErrorRate),
			func() error {
				n.awsProxy.SetErrorRate(awsErrorRate)
				n.awsProxy.SetDeleteFailRate(awsErrorRate)
				return nil
			}, false}
	case AWSBlackhole:
		return &stagedFault{20 * time.Second, "the SQS/SNS path forwards nothing", n.sqs.Blackhole, true}
	}
	return nil
}

// timedFault stages f for its length (or Config.Fault), then heals every
// path. The length is the fault being staged, not a wait for something.
func (d *drill) timedFault(sc string, w window, f *stagedFault) (window, error) {
	length := f.length
	if d.cfg.Fault > 0 {
		length = d.cfg.Fault
	}
	d.say("%s: %s, for %s", sc, f.what, length)
	if err := f.inject(); err != nil {
		return w, errors.Join(err, d.net.heal())
	}
	time.Sleep(length)
	if err := d.net.heal(); err != nil {
		return w, err
	}
	w.end = time.Now()
	if f.recovers {
		w.writable = w.end
	}
	d.say("%s: healed", sc)
	return w, nil
}

// snapshot is what the workers and the fault servers have counted so far.
type snapshot struct {
	transitions     map[string]float64
	risks           map[string]float64 // email duplicate risks by cause
	bypass          float64            // messages decided without Redis
	outboxPublished float64
	outboxFailures  float64
	cut, commits    int
	dropped         int
	awsFaulted      int
	deletesFailed   int
}

var riskCauses = []string{"outcome_unknown", "unrecorded", "takeover"}

func (d *drill) snapshot() snapshot {
	s := snapshot{transitions: d.transitions(), risks: map[string]float64{}}
	for _, m := range d.metrics {
		for _, c := range riskCauses {
			s.risks[c] += testutil.ToFloat64(m.EmailDuplicateRisk.WithLabelValues(c))
		}
		for _, h := range []string{"billing", "inventory", "notification"} {
			s.bypass += testutil.ToFloat64(m.IdempotencyOutcomes.WithLabelValues(h, "bypass"))
		}
		s.outboxPublished += testutil.ToFloat64(m.OutboxPublished)
		s.outboxFailures += testutil.ToFloat64(m.OutboxPublishFailures)
	}
	n := &d.net
	s.cut, s.commits, s.dropped = n.cutter.Cut(), n.cutter.Commits(), n.smtp.Dropped()
	s.awsFaulted, s.deletesFailed = n.awsProxy.FaultedTotal(), n.awsProxy.FailedDeleteEntries()
	return s
}

// breakerWatch notes when each breaker first opened after a moment.
type breakerWatch struct {
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	opened map[string]time.Time
}

// breakers are the breakers the drill watches and counts transitions of.
var breakers = []string{"database", "redis", "smtp", "sns"}

// watchBreakers polls the workers' breaker states every 20 ms.
func (d *drill) watchBreakers() *breakerWatch {
	w := &breakerWatch{stopCh: make(chan struct{}), done: make(chan struct{}), opened: map[string]time.Time{}}
	go func() {
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stopCh:
				return
			case <-t.C:
			}
			for _, m := range d.metrics {
				for _, b := range breakers {
					if testutil.ToFloat64(m.BreakerState.WithLabelValues(b)) == 2 { // gobreaker's StateOpen
						w.mu.Lock()
						if _, ok := w.opened[b]; !ok {
							w.opened[b] = time.Now()
						}
						w.mu.Unlock()
					}
				}
			}
		}
	}()
	return w
}

// stop stops the watch and returns when each breaker first opened.
func (w *breakerWatch) stop() map[string]time.Time {
	close(w.stopCh)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.opened
}

// check runs the scenario's own promises, beyond lost, duplicated,
// dead-lettered and recovery, into r.Notes and r.Broken.
func (d *drill) check(ctx context.Context, sc string, r *Result, w window, before, after snapshot, opened map[string]time.Time) error {
	note := func(format string, args ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, args...)) }
	broke := func(format string, args ...any) {
		r.Broken = append(r.Broken, fmt.Sprintf(format, args...))
		note("**"+format+"**", args...)
	}
	risks := int(after.risks["outcome_unknown"] - before.risks["outcome_unknown"] + after.risks["unrecorded"] - before.risks["unrecorded"])
	if r.mailRepeats > 0 || risks > 0 {
		note("emails at risk %d, sent twice %d", risks, r.mailRepeats)
	}
	openedAfter := func(b string) (time.Duration, bool) {
		t, ok := opened[b]
		return t.Sub(w.start), ok
	}
	switch sc {
	case DBBlackhole:
		t, ok := openedAfter("database")
		checkHang(t, ok, note, broke)
	case DBLatency:
		if _, ok := openedAfter("database"); ok {
			broke("the database breaker opened on latency alone")
		}
		return d.checkRates(ctx, sc, w, note, broke)
	case DBResetAtCommit:
		note("%d of %d commits cut after the server decided them", after.cut-before.cut, after.commits-before.commits)
		if after.cut == before.cut {
			broke("no commit was cut")
		}
	case RedisBlackhole:
		if t, ok := openedAfter("redis"); !ok {
			broke("the Redis breaker never opened")
		} else {
			note("Redis breaker open %.1f s into the hang; %.0f messages decided by the ledger alone", t.Seconds(), after.bypass-before.bypass)
		}
		return d.checkRates(ctx, sc, w, note, broke)
	case SMTPResetAfterData:
		checkDropped(after.dropped-before.dropped, int(after.risks["outcome_unknown"]-before.risks["outcome_unknown"]), note, broke)
	case SMTPSlow:
		return d.checkRates(ctx, sc, w, note, broke)
	case AWSErrors:
		note("%d SQS/SNS calls failed, %d batch-delete entries failed; outbox published %.0f, failed %.0f batches",
			after.awsFaulted-before.awsFaulted, after.deletesFailed-before.deletesFailed,
			after.outboxPublished-before.outboxPublished, after.outboxFailures-before.outboxFailures)
	case AWSBlackhole:
		r.RecoveryTarget = awsRecoveryTarget
		note("outbox published %.0f, failed %.0f batches", after.outboxPublished-before.outboxPublished, after.outboxFailures-before.outboxFailures)
	}
	return nil
}

// checkHang checks that the database breaker saw the hang (opened t into
// it, if ok) within hangDetectTarget.
func checkHang(t time.Duration, ok bool, note, broke func(string, ...any)) {
	if !ok {
		broke("the database breaker never opened")
		return
	}
	note("database breaker open %.1f s into the hang", t.Seconds())
	if t > hangDetectTarget {
		broke("the breaker saw the hang only after %.1f s (want ≤ %s)", t.Seconds(), hangDetectTarget)
	}
}

// checkDropped checks that every email dropped after DATA was counted at
// risk (outcome unknown).
func checkDropped(dropped, unknown int, note, broke func(string, ...any)) {
	note("%d emails dropped after DATA", dropped)
	if dropped == 0 {
		broke("no email was dropped after DATA")
	}
	if unknown < dropped {
		broke("%d emails dropped after DATA, only %d counted at risk", dropped, unknown)
	}
}

// checkRates measures the handlers' commit rates while the fault lasted
// and after it: the handlers it must not slow keep keepRate of the offered
// rate during it; after a database fault every handler catches up.
func (d *drill) checkRates(ctx context.Context, sc string, w window, note, broke func(string, ...any)) error {
	// The first seconds of a fault are the breaker's to notice it.
	from, to := w.start.Add(3*time.Second), w.end
	want := keepRate * float64(d.cfg.Rate)
	rate := func(handler string, from, to time.Time) (float64, error) {
		var n int
		err := d.db.Pool().QueryRow(ctx, `SELECT count(*) FROM processed_events WHERE handler = $1 AND event_type = 'order.placed'
			AND order_id LIKE $2 AND processed_at >= $3 AND processed_at < $4`, handler, d.orderPrefix(sc)+"%", from, to).Scan(&n)
		if err != nil {
			return 0, fmt.Errorf("drill: %s's rate: %w", handler, err)
		}
		return float64(n) / to.Sub(from).Seconds(), nil
	}
	kept := []string{"billing", "inventory"}
	if sc == DBLatency {
		kept = nil // the database is what is slow
	}
	for _, h := range []string{"billing", "inventory", "notification"} {
		during, err := rate(h, from, to)
		if err != nil {
			return err
		}
		note("%s %.0f/s during", h, during)
		for _, k := range kept {
			if k == h && during < want {
				broke("%s kept %.0f orders/s during the fault (want ≥ %.0f)", h, during, want)
			}
		}
	}
	if sc == DBLatency {
		afterRate, err := rate("billing", w.end, w.end.Add(d.cfg.After))
		if err != nil {
			return err
		}
		note("billing %.0f/s in the %s after", afterRate, d.cfg.After)
		if afterRate < want {
			broke("throughput did not recover after the latency: billing %.0f/s (want ≥ %.0f)", afterRate, want)
		}
	}
	return nil
}

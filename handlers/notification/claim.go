package notification

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/resilience/retry"
	"github.com/orderpipe/orderpipe/worker"
)

// The email claim. Email cannot join a database transaction, so each email
// is claimed in the database before it is sent and recorded the moment the
// SMTP server accepts it. Courier owns the whole protocol:
//
//	claim   one statement through the pool: a new claim ('sending', a lease
//	        of ClaimRules.TTL and this delivery's token), a retry of a send
//	        the server refused ('failed'), or a takeover of a claim whose
//	        lease ran out unrecorded ('sending' or 'unknown': counted and
//	        logged, the email may be out already). A live claim of another
//	        delivery sends the message back to its queue until the holder's
//	        lease is over; a recorded email sends nothing.
//	send    over SMTP, holding no database connection: a slow mail server
//	        cannot starve the pool the other handlers share.
//	record  on acceptance, before the SMTP session is even closed: status
//	        'sent' and the ledger row in one statement, retried for
//	        ClaimRules.RecordFor through a database failover.
//	abandon when the server refused the email (nothing went out): status
//	        'failed', retried for ClaimRules.AbandonFor, so the retry need
//	        not wait out the lease.
//	unknown when the connection broke after the whole message was sent and
//	        before the server's verdict: status 'unknown', lease kept.
//
// Two windows can duplicate an email, both counted in
// orderpipe_email_duplicate_risk_total: an accepted email not recorded
// within RecordFor (or a worker dying between acceptance and record), cause
// "unrecorded"; and a send whose outcome is unknown, cause
// "outcome_unknown". In both the claim is kept until its lease runs out and
// the delivery is never retried in process: only a later delivery sends
// again, as a takeover (cause "takeover", with a warning), with the same
// Message-ID so receivers that deduplicate drop it.

// ClaimRules are the email claim's timing rules.
type ClaimRules struct {
	// TTL is the lease of a claim (EMAIL_CLAIM_TTL): a concurrent copy
	// waits this long, and a dead worker's email is taken over after it.
	// Defaults to ClaimTTLDefault.
	TTL time.Duration
	// SendTimeout bounds one SMTP send, acceptance included
	// (SMTP_TIMEOUT). Defaults to mailer.TimeoutDefault.
	SendTimeout time.Duration
	// RecordFor bounds the retries of recording an accepted email.
	// Defaults to what the lease leaves after the send and ClaimMargin, at
	// most RecordForDefault.
	RecordFor time.Duration
	// AbandonFor bounds the retries of giving back the claim of an email
	// that was not sent. Defaults to AbandonForDefault.
	AbandonFor time.Duration
}

// Claim timing defaults and limits.
const (
	ClaimTTLDefault = 2 * time.Minute
	// RecordForDefault is the longest the courier keeps trying to record an
	// accepted email: a database failover of that length costs no duplicate.
	RecordForDefault = 90 * time.Second
	// MinRecordFor is the shortest record window the rules accept.
	MinRecordFor = 5 * time.Second
	// ClaimMargin is what the lease keeps beyond the send and the record:
	// the claim's own round trip and scheduling delays.
	ClaimMargin = 5 * time.Second
	// AbandonForDefault bounds the give-back of an unsent email's claim;
	// past it the claim runs out on its own after TTL.
	AbandonForDefault = 10 * time.Second
)

// WithDefaults returns r with every zero field set to its default.
func (r ClaimRules) WithDefaults() ClaimRules {
	if r.TTL <= 0 {
		r.TTL = ClaimTTLDefault
	}
	if r.SendTimeout <= 0 {
		r.SendTimeout = mailer.TimeoutDefault
	}
	if r.RecordFor <= 0 {
		r.RecordFor = min(r.TTL-r.SendTimeout-ClaimMargin, RecordForDefault)
	}
	if r.AbandonFor <= 0 {
		r.AbandonFor = AbandonForDefault
	}
	return r
}

// Validate refuses rules under which a live sender could be taken over: the
// lease must outlast the send, the record window and the margin. A derived record window must be at least MinRecordFor.
func (r ClaimRules) Validate() error {
	derived := r.RecordFor <= 0
	r = r.WithDefaults()
	if (derived && r.RecordFor < MinRecordFor) || r.TTL < r.SendTimeout+r.RecordFor+ClaimMargin {
		return fmt.Errorf("EMAIL_CLAIM_TTL=%s is too short for SMTP_TIMEOUT=%s: the claim must outlast the send, at least %s to record an accepted email and a %s margin (at least %s), or a second copy could take over an email still being sent",
			r.TTL, r.SendTimeout, MinRecordFor, ClaimMargin, r.SendTimeout+MinRecordFor+ClaimMargin)
	}
	return nil
}

// Claim is the outcome of claiming an email.
type Claim int

// Claims.
const (
	Claimed     Claim = iota // a new claim, this delivery's own, or a retry of a send the server refused
	TakenOver                // a claim that ran out unrecorded: the email may be out already
	AlreadySent              // recorded as sent: send nothing
)

// ClaimRequest is one email to claim.
type ClaimRequest struct {
	Event     events.Event
	Kind      string // the email's kind: the event type
	Recipient string
	MessageID string
	// Token identifies the delivery: a claim made with the same token (a
	// commit whose acknowledgement a failover swallowed) is this delivery's
	// own, as long as it is still 'sending'.
	Token string
	TTL   time.Duration
}

// ClaimedError is returned by ClaimStore.Claim while another delivery holds
// a live claim on the same email, for Remaining more.
type ClaimedError struct{ Remaining time.Duration }

func (e *ClaimedError) Error() string {
	return fmt.Sprintf("email claimed by another delivery for %s more", e.Remaining.Round(time.Millisecond))
}

// ClaimStore keeps the email claims. Every method is one statement through
// the pool: no connection is held between them.
type ClaimStore interface {
	// Claim claims the email. It returns a *ClaimedError while another
	// delivery's claim is live, and an error wrapping events.ErrConflict if
	// the event_id is known with another payload.
	Claim(ctx context.Context, req ClaimRequest) (Claim, error)
	// Record marks the email sent and writes the ledger row.
	Record(ctx context.Context, ev events.Event) error
	// Abandon marks a claim failed: the email was not sent.
	Abandon(ctx context.Context, ev events.Event) error
	// MarkUnknown moves token's claim to 'unknown': the email may be out.
	MarkUnknown(ctx context.Context, ev events.Event, token string) error
}

// Sender delivers one email and calls accepted once the server took it
// (mailer.SMTP). An error wrapping mailer.ErrOutcomeUnknown means the
// email may be out.
type Sender interface {
	Send(ctx context.Context, m mailer.Message, accepted func() error) error
}

// Courier delivers emails under the claim protocol above.
type Courier struct {
	store   ClaimStore
	sender  Sender
	rules   ClaimRules
	log     *slog.Logger
	metrics *metrics.Metrics
}

// NewCourier returns a Courier, or the rules' error. m counts sends and
// duplicate risks; nil counts into a set nobody serves.
func NewCourier(store ClaimStore, sender Sender, rules ClaimRules, log *slog.Logger, m *metrics.Metrics) (*Courier, error) {
	if err := rules.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Courier{store: store, sender: sender, rules: rules.WithDefaults(), log: log, metrics: metrics.Or(m)}, nil
}

// errUnrecorded marks an email the server accepted that could not be recorded.
var errUnrecorded = errors.New("email accepted by the SMTP server but not recorded")

// Deliver sends msg for ev at most once per claim.
func (c *Courier) Deliver(ctx context.Context, ev events.Event, msg mailer.Message) error {
	token := claimToken(ctx)
	claim, err := c.store.Claim(ctx, ClaimRequest{
		Event: ev, Kind: string(ev.EventType), Recipient: msg.To, MessageID: msg.MessageID, Token: token, TTL: c.rules.TTL,
	})
	var claimed *ClaimedError
	switch {
	case errors.As(err, &claimed):
		return &resilience.HeldError{Remaining: claimed.Remaining, ByOther: true, Err: err}
	case err != nil || claim == AlreadySent:
		return err
	case claim == TakenOver:
		c.metrics.EmailDuplicateRisk.WithLabelValues("takeover").Inc()
		c.log.WarnContext(ctx, "sending an email whose earlier claim ran out unrecorded; it may arrive twice (same Message-ID)",
			"event_id", ev.EventID, "order_id", ev.Order.OrderID, "message_id", msg.MessageID)
	}
	err = c.sender.Send(ctx, msg, func() error {
		c.metrics.EmailsSent.WithLabelValues(string(ev.EventType)).Inc()
		return c.record(ctx, ev)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errUnrecorded):
		return c.keepClaim(ctx, ev, token, "unrecorded", err)
	case errors.Is(err, mailer.ErrOutcomeUnknown):
		return c.keepClaim(ctx, ev, token, "outcome_unknown", err)
	}
	// Not sent: give the claim back.
	if aerr := c.abandon(ctx, ev); aerr != nil {
		err = errors.Join(err, aerr)
	}
	return err
}

// keepClaim ends a delivery whose email may be out: the claim stays until its
// lease runs out, and the message comes back only then, to a later delivery
// that takes it over (counted). Never a retry in process, which would send
// again at once and uncounted.
func (c *Courier) keepClaim(ctx context.Context, ev events.Event, token, cause string, err error) error {
	c.metrics.EmailDuplicateRisk.WithLabelValues(cause).Inc()
	c.log.WarnContext(ctx, "email may be out but is not recorded; its claim is kept until it runs out, then a later delivery sends it again",
		"event_id", ev.EventID, "order_id", ev.Order.OrderID, "cause", cause, "err", err)
	if cause == "outcome_unknown" {
		dctx, stop := worker.Detached(ctx)
		defer stop()
		mctx, cancel := context.WithTimeout(dctx, c.rules.AbandonFor)
		defer cancel()
		if merr := c.store.MarkUnknown(mctx, ev, token); merr != nil {
			c.log.DebugContext(ctx, "mark email outcome unknown", "event_id", ev.EventID, "order_id", ev.Order.OrderID, "err", merr)
		}
	}
	return &resilience.HeldError{Remaining: c.rules.TTL, Err: err}
}

// record records an accepted email, retrying every failure (an open
// breaker included) with backoff from 100 ms to 2 s for up to RecordFor,
// even if ctx is cancelled meanwhile (the email is out either way) — but,
// in a Lambda function, not past the invocation (worker.Detached).
func (c *Courier) record(ctx context.Context, ev events.Event) error {
	dctx, stop := worker.Detached(ctx)
	defer stop()
	ctx, cancel := context.WithTimeout(dctx, c.rules.RecordFor)
	defer cancel()
	if err := retry.Do(ctx, retry.Policy{}, nil, func(ctx context.Context) error { return c.store.Record(ctx, ev) }); err != nil {
		return fmt.Errorf("%w: %w", errUnrecorded, err)
	}
	return nil
}

// abandon gives back the claim of an email that was not sent, retrying
// through a database blip for up to AbandonFor, so the message's retry finds
// the claim free instead of waiting out the lease.
func (c *Courier) abandon(ctx context.Context, ev events.Event) error {
	dctx, stop := worker.Detached(ctx)
	defer stop()
	ctx, cancel := context.WithTimeout(dctx, c.rules.AbandonFor)
	defer cancel()
	return retry.Do(ctx, retry.Policy{}, nil, func(ctx context.Context) error { return c.store.Abandon(ctx, ev) })
}

// claimToken identifies the delivery being handled: a digest of its SQS
// receipt handle, unique per receive. Outside the worker (direct calls), a
// random token per call.
func claimToken(ctx context.Context) string {
	if m, ok := worker.FromContext(ctx); ok && m.ReceiptHandle() != "" {
		sum := sha256.Sum256([]byte(m.ReceiptHandle()))
		return hex.EncodeToString(sum[:16])
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

package notification_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
)

// These tests pin down the courier's steps with a fake claim store that
// writes down every call; the real store's claims are tested against
// PostgreSQL in store/ and the whole handler in internal/app.

var errDown = errors.New("database: circuit breaker open")

type fakeStore struct {
	calls       []string
	claim       notification.Claim
	claimErr    error
	recordErrs  []error // returned by successive Record calls; the last one repeats
	abandonErrs []error // returned by successive Abandon calls
}

func (s *fakeStore) call(name string) { s.calls = append(s.calls, name) }

func (s *fakeStore) Claim(context.Context, notification.ClaimRequest) (notification.Claim, error) {
	s.call("claim")
	return s.claim, s.claimErr
}

func (s *fakeStore) Record(context.Context, events.Event) error {
	s.call("record")
	if len(s.recordErrs) == 0 {
		return nil
	}
	err := s.recordErrs[0]
	if len(s.recordErrs) > 1 {
		s.recordErrs = s.recordErrs[1:]
	}
	return err
}

func (s *fakeStore) Abandon(context.Context, events.Event) error {
	s.call("abandon")
	if len(s.abandonErrs) == 0 {
		return nil
	}
	err := s.abandonErrs[0]
	s.abandonErrs = s.abandonErrs[1:]
	return err
}

func (s *fakeStore) MarkUnknown(context.Context, events.Event, string) error {
	s.call("unknown")
	return nil
}

// compact folds repeated calls: "record×3".
func compact(calls []string) []string {
	var out []string
	for i := 0; i < len(calls); {
		j := i
		for j < len(calls) && calls[j] == calls[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s×%d", calls[i], j-i))
		} else {
			out = append(out, calls[i])
		}
		i = j
	}
	return out
}

type fakeCatalog struct{}

func (fakeCatalog) Products(_ context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, error) {
	out := make(map[events.SKU]catalog.Product, len(skus))
	for _, sku := range skus {
		out[sku] = catalog.Product{SKU: sku, Name: "Classic mug", Price: 1299}
	}
	return out, nil
}

// fakeSender accepts (and calls accepted) unless fail is set; sends counts
// every message that reached the server, accepted or not.
type fakeSender struct {
	fail  error
	sends int
}

func (f *fakeSender) Send(_ context.Context, _ mailer.Message, accepted func() error) error {
	f.sends++
	if f.fail != nil {
		return f.fail
	}
	return accepted()
}

func placed() events.Event {
	return events.Event{
		EventID: "6f1c2c1e-0d7e-4c1a-9d1e-2b7a4f3c9a10", EventType: events.OrderPlaced, SchemaVersion: 1,
		OccurredAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		Order: events.Order{
			OrderID: "ord-1", Currency: "USD",
			Customer: events.Customer{ID: "cus-1", Email: "ada@example.com", Name: "Ada"},
			Items:    []events.Item{{SKU: "MUG-CLASSIC", Quantity: 2}},
		},
	}
}

// rules keeps the courier's bounded retries short in tests.
var rules = notification.ClaimRules{TTL: 12 * time.Second, SendTimeout: time.Second, RecordFor: 300 * time.Millisecond, AbandonFor: 2 * time.Second}

func risk(m *metrics.Metrics, cause string) float64 {
	return testutil.ToFloat64(m.EmailDuplicateRisk.WithLabelValues(cause))
}

func TestCourierSteps(t *testing.T) {
	outcomeUnknown := fmt.Errorf("end data: %w: connection reset by peer", mailer.ErrOutcomeUnknown)
	tests := []struct {
		name      string
		store     fakeStore
		sender    fakeSender
		wantErr   error                 // nil: success
		wantHeld  *resilience.HeldError // the hold asked for, if any (Err not compared)
		wantCalls []string
		wantRisk  string // the duplicate-risk cause counted, if any
	}{
		{
			name:      "sent and recorded",
			wantCalls: []string{"claim", "record"},
		},
		{
			name:      "no database: nothing claimed, nothing sent",
			store:     fakeStore{claimErr: errDown},
			wantErr:   errDown,
			wantCalls: []string{"claim"},
		},
		{
			name:      "already sent: nothing sent again",
			store:     fakeStore{claim: notification.AlreadySent},
			wantCalls: []string{"claim"},
		},
		{
			name:      "a live claim of another delivery: come back when it may be over",
			store:     fakeStore{claimErr: &notification.ClaimedError{Remaining: 30 * time.Second}},
			wantErr:   &notification.ClaimedError{},
			wantHeld:  &resilience.HeldError{Remaining: 30 * time.Second, ByOther: true},
			wantCalls: []string{"claim"},
		},
		{
			name:      "refused by the server: the claim is given back",
			sender:    fakeSender{fail: errRefused},
			wantErr:   errRefused,
			wantCalls: []string{"claim", "abandon"},
		},
		{
			name:      "refused during a database blip: the give-back is retried until it lands",
			store:     fakeStore{abandonErrs: []error{errDown, errDown}},
			sender:    fakeSender{fail: errRefused},
			wantErr:   errRefused,
			wantCalls: []string{"claim", "abandon×3"},
		},
		{
			name:      "outcome unknown: the claim is kept and marked, the message comes back after the lease",
			sender:    fakeSender{fail: outcomeUnknown},
			wantErr:   mailer.ErrOutcomeUnknown,
			wantHeld:  &resilience.HeldError{Remaining: rules.TTL},
			wantCalls: []string{"claim", "unknown"},
			wantRisk:  "outcome_unknown",
		},
		{
			name:     "accepted but the record keeps failing: counted, the claim is kept",
			store:    fakeStore{recordErrs: []error{errDown}},
			wantErr:  errDown,
			wantHeld: &resilience.HeldError{Remaining: rules.TTL},
			wantRisk: "unrecorded",
		},
		{
			name:      "a claim that ran out unrecorded is taken over: counted",
			store:     fakeStore{claim: notification.TakenOver},
			wantCalls: []string{"claim", "record"},
			wantRisk:  "takeover",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
			m := metrics.New()
			courier, err := notification.NewCourier(&tt.store, &tt.sender, rules, log, m)
			if err != nil {
				t.Fatal(err)
			}
			err = notification.New(fakeCatalog{}, courier, notification.Config{}).Handle(context.Background(), placed())
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Handle: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr) && !errors.As(err, new(*notification.ClaimedError)):
				t.Fatalf("Handle = %v, want an error wrapping %v", err, tt.wantErr)
			}
			var held *resilience.HeldError
			if ok := errors.As(err, &held); ok != (tt.wantHeld != nil) ||
				ok && (held.Remaining != tt.wantHeld.Remaining || held.ByOther != tt.wantHeld.ByOther) {
				t.Errorf("held %+v, want %+v", held, tt.wantHeld)
			}
			if tt.wantCalls != nil && !slices.Equal(compact(tt.store.calls), tt.wantCalls) {
				t.Errorf("store calls %s, want %s", strings.Join(compact(tt.store.calls), ", "), strings.Join(tt.wantCalls, ", "))
			}
			if tt.sender.sends > 1 {
				t.Errorf("the server saw %d sends, want at most 1", tt.sender.sends)
			}
			if tt.wantRisk != "" {
				if got := risk(m, tt.wantRisk); got != 1 {
					t.Errorf("orderpipe_email_duplicate_risk_total{cause=%q} grew by %v, want 1", tt.wantRisk, got)
				}
				if !strings.Contains(logged.String(), "level=WARN") {
					t.Errorf("no warning logged for a duplicate risk:\n%s", logged.String())
				}
			}
		})
	}
}

var errRefused = errors.New("smtp: 550 mailbox unavailable")

// TestOutcomeUnknownIsNotResentInProcess: the worker's in-process retry
// (handlers.Resilient) must not send again an email whose outcome is
// unknown: the same delivery would re-enter its own claim and send a
// second copy, uncounted.
func TestOutcomeUnknownIsNotResentInProcess(t *testing.T) {
	store := &fakeStore{}
	sender := &fakeSender{fail: fmt.Errorf("end data: %w: EOF", mailer.ErrOutcomeUnknown)}
	courier, err := notification.NewCourier(store, sender, rules, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := handlers.Resilient(notification.Name, resilience.RetryBudget{Tries: 3, Initial: time.Millisecond}, nil,
		notification.New(fakeCatalog{}, courier, notification.Config{}).Handle)
	err = h(context.Background(), placed())
	if !errors.Is(err, mailer.ErrOutcomeUnknown) {
		t.Fatalf("Handle = %v, want the unknown outcome", err)
	}
	if sender.sends != 1 {
		t.Errorf("the server saw %d sends of one email from one delivery, want 1", sender.sends)
	}
}

func TestClaimRulesValidate(t *testing.T) {
	tests := []struct {
		name  string
		rules notification.ClaimRules
		ok    bool
	}{
		{"defaults", notification.ClaimRules{}, true},
		{"the shortest claim for a 1s send", notification.ClaimRules{TTL: 11 * time.Second, SendTimeout: time.Second}, true},
		{"claim at the send timeout", notification.ClaimRules{TTL: 10 * time.Second, SendTimeout: 10 * time.Second}, false},
		{"claim below send + record + margin", notification.ClaimRules{TTL: 19 * time.Second, SendTimeout: 10 * time.Second}, false},
		{"explicit record window too long for the claim", notification.ClaimRules{TTL: time.Minute, SendTimeout: 10 * time.Second, RecordFor: 50 * time.Second}, false},
		{"explicit record window that fits", notification.ClaimRules{TTL: time.Minute, SendTimeout: 10 * time.Second, RecordFor: 40 * time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rules.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), "EMAIL_CLAIM_TTL") || !strings.Contains(err.Error(), "SMTP_TIMEOUT")) {
				t.Errorf("the error does not name the variables: %v", err)
			}
		})
	}
}

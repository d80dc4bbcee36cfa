package handlers

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/worker"
)

// fakeKeys is a scripted KeyStore: pure logic under test, no Redis.
type fakeKeys struct {
	begin              Lease
	beginErr           error
	completed, renewed int
	released           int
}

func (f *fakeKeys) Begin(context.Context, string, events.EventID, string) (Lease, error) {
	return f.begin, f.beginErr
}
func (f *fakeKeys) Renew(context.Context, Lease) error    { f.renewed++; return nil }
func (f *fakeKeys) Complete(context.Context, Lease) error { f.completed++; return nil }
func (f *fakeKeys) Release(context.Context, Lease) error  { f.released++; return nil }
func (f *fakeKeys) LeaseTTL() time.Duration               { return 30 * time.Second }

func TestIdempotent(t *testing.T) {
	errDB := errors.New("database down")
	conflict := errors.Join(errors.New("ledger"), events.ErrConflict)
	tests := []struct {
		name      string
		keys      fakeKeys
		next      error
		wantCalls int
		wantErr   func(error) string // "" if err is as expected
		completed int
		released  int
	}{
		{name: "first copy runs and is recorded", keys: fakeKeys{begin: Lease{Outcome: Acquired}},
			wantCalls: 1, wantErr: isNil, completed: 1},
		{name: "known duplicate is acknowledged without the handler", keys: fakeKeys{begin: Lease{Outcome: Done}},
			wantCalls: 0, wantErr: isNil},
		{name: "conflicting payload goes to the DLQ without the handler", keys: fakeKeys{begin: Lease{Outcome: Conflict}},
			wantCalls: 0, wantErr: isPermanent(string(events.ReasonConflict))},
		{name: "concurrent copy comes back later, bounded", keys: fakeKeys{begin: Lease{Outcome: Busy, Remaining: 25 * time.Second}},
			wantCalls: 0, wantErr: isRetryAfter(maxHolderWait)},
		{name: "concurrent copy waits at least a second", keys: fakeKeys{begin: Lease{Outcome: Busy, Remaining: time.Millisecond}},
			wantCalls: 0, wantErr: isRetryAfter(time.Second)},
		{name: "redis failure runs the handler on the ledger alone", keys: fakeKeys{beginErr: errors.New("redis down")},
			wantCalls: 1, wantErr: isNil},
		{name: "ledger conflict with redis down goes to the DLQ", keys: fakeKeys{beginErr: errors.New("redis down")}, next: conflict,
			wantCalls: 1, wantErr: isPermanent(string(events.ReasonConflict))},
		{name: "handler failure releases the lease for the retry", keys: fakeKeys{begin: Lease{Outcome: Acquired}}, next: errDB,
			wantCalls: 1, wantErr: func(err error) string { return is(err, errDB) }, released: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			keys := tt.keys
			fn := Idempotent(&keys, "billing", slog.New(slog.DiscardHandler), nil, func(context.Context, events.Event) error {
				calls++
				return tt.next
			})
			ctx := context.Background()
			err := outcome(ctx, fn(ctx, events.Event{EventID: "6f1c0b56-8a4e-4d2a-9c43-0a4b2b1b8f11", EventType: events.OrderPlaced}))
			if calls != tt.wantCalls {
				t.Errorf("handler ran %d times, want %d", calls, tt.wantCalls)
			}
			if msg := tt.wantErr(err); msg != "" {
				t.Error(msg)
			}
			if keys.completed != tt.completed || keys.released != tt.released {
				t.Errorf("completed %d, released %d; want %d, %d", keys.completed, keys.released, tt.completed, tt.released)
			}
		})
	}
}

func isNil(err error) string {
	if err != nil {
		return "err = " + err.Error() + ", want nil"
	}
	return ""
}

func is(err, target error) string {
	if !errors.Is(err, target) {
		return "err = " + errString(err) + ", want " + target.Error()
	}
	return ""
}

func isPermanent(reason string) func(error) string {
	return func(err error) string {
		if r, ok := worker.PermanentReason(err); !ok || r != reason {
			return "err = " + errString(err) + ", want permanent with reason " + reason
		}
		return ""
	}
}

func isRetryAfter(d time.Duration) func(error) string {
	return func(err error) string {
		if got, ok := worker.RetryAfterDelay(err); !ok || got != d {
			return "err = " + errString(err) + ", want retry after " + d.String()
		}
		return ""
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// renewingKeys counts renewals of a short lease, and loses it after lostAfter.
type renewingKeys struct {
	fakeKeys

	renewals  atomic.Int32
	lostAfter int32
}

func (k *renewingKeys) Renew(context.Context, Lease) error {
	if k.renewals.Add(1) > k.lostAfter {
		return ErrLeaseLost
	}
	return nil
}
func (k *renewingKeys) LeaseTTL() time.Duration { return 30 * time.Millisecond }

// TestLeaseIsRenewedWhileTheHandlerRuns: a handler that outlives a third of
// the lease has it renewed, again and again; once it is lost, no more
// renewals are tried; after the handler returns, none.
func TestLeaseIsRenewedWhileTheHandlerRuns(t *testing.T) {
	for _, tt := range []struct {
		name      string
		lostAfter int32
		want      func(n int32) bool
		wantText  string
	}{
		{"kept", 1000, func(n int32) bool { return n >= 3 }, "at least 3 (one every 10ms for 100ms)"},
		{"lost at the second", 1, func(n int32) bool { return n == 2 }, "2 (then no more)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			keys := &renewingKeys{fakeKeys: fakeKeys{begin: Lease{Outcome: Acquired}}, lostAfter: tt.lostAfter}
			h := Idempotent(keys, "billing", slog.New(slog.DiscardHandler), nil, func(context.Context, events.Event) error {
				time.Sleep(100 * time.Millisecond)
				return nil
			})
			if err := h(context.Background(), events.Event{EventID: "e"}); err != nil {
				t.Fatal(err)
			}
			n := keys.renewals.Load()
			if !tt.want(n) {
				t.Errorf("%d renewals, want %s", n, tt.wantText)
			}
			time.Sleep(50 * time.Millisecond)
			if after := keys.renewals.Load(); after != n {
				t.Errorf("%d renewals after the handler returned", after-n)
			}
		})
	}
}

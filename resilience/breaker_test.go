package resilience

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

var quiet = slog.New(slog.DiscardHandler)

func TestBreakerOpensOnUnavailableOnlyAndGatesUntilTheProbeSucceeds(t *testing.T) {
	var up atomic.Bool
	b := NewBreaker(context.Background(), BreakerConfig{Name: "test-db", Failures: 3, OpenFor: 50 * time.Millisecond, Logger: quiet,
		Probe: func(context.Context) error {
			if up.Load() {
				return nil
			}
			return syscall.ECONNREFUSED
		}})
	defer b.Close()

	// Failures that say nothing about the dependency's health do not count.
	for range 10 {
		_ = b.Do(func() error { return &pgconn.PgError{Code: "23505"} })
		_ = b.Do(func() error { return &pgconn.PgError{Code: "40001"} })
	}
	if !b.Closed() {
		t.Fatal("breaker opened on constraint violations and serialization failures")
	}
	for range 3 {
		_ = b.Do(func() error { return &pgconn.PgError{Code: "57P01"} })
	}
	if b.Closed() {
		t.Fatal("breaker still closed after 3 admin shutdowns")
	}
	if err := b.Do(func() error { t.Error("open breaker ran the call"); return nil }); !errors.Is(err, ErrOpen) {
		t.Errorf("call through open breaker = %v, want ErrOpen", err)
	}

	// The gate holds while the dependency is down...
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := b.Wait(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait while down = %v, want it to block until the deadline", err)
	}
	// ...and opens soon after the probe succeeds, with no message risked.
	up.Store(true)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.Wait(ctx); err != nil {
		t.Fatalf("Wait after recovery = %v, want nil", err)
	}
	if !b.Closed() {
		t.Error("gate open but breaker not closed")
	}
}

func TestRetry(t *testing.T) {
	blip := &pgconn.PgError{Code: "40P01"}
	tests := []struct {
		name      string
		errs      []error // returned by successive calls; nil after the list
		wantCalls int
		wantErr   error
	}{
		{"success at once", nil, 1, nil},
		{"deadlock then success", []error{blip}, 2, nil},
		{"blips exhaust three tries", []error{blip, blip, blip, blip}, 3, blip},
		{"permanent returns at once", []error{&pgconn.PgError{Code: "23505"}}, 1, &pgconn.PgError{Code: "23505"}},
		{"open breaker returns at once", []error{ErrOpen}, 1, ErrOpen},
		{"held returns at once", []error{&HeldError{Remaining: time.Second, Err: io.EOF}}, 1, &HeldError{Remaining: time.Second, Err: io.EOF}},
		{"a domain error that says it is permanent returns at once", []error{fakePermanentError{}}, 1, fakePermanentError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls, retries := 0, 0
			err := Retry(context.Background(), RetryBudget{Initial: time.Millisecond}, func(Failure) { retries++ }, func(context.Context) error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if retries != calls-1 {
				t.Errorf("onRetry heard %d retries for %d calls", retries, calls)
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && (err == nil || err.Error() != tt.wantErr.Error()) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// syncBuffer is a log sink written from the breaker's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// count returns how many log lines contain every one of subs.
func (s *syncBuffer) count(subs ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for line := range strings.SplitSeq(s.buf.String(), "\n") {
		all := line != ""
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			n++
		}
	}
	return n
}

// TestBreakerLogsOncePerEpisodeAndRemindsWhy: an outage is one "open" line
// (with the failure that tripped it), however many calls fail meanwhile;
// while it lasts, a reminder with the last failure (host, port, error) every
// RemindEvery, so a worker whose database never comes up does not go
// silent; and one "closed" line when it ends.
func TestBreakerLogsOncePerEpisodeAndRemindsWhy(t *testing.T) {
	var logged syncBuffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	var up atomic.Bool
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 6432}, Err: syscall.ECONNREFUSED}
	b := NewBreaker(context.Background(), BreakerConfig{Name: "test-db", Failures: 2, OpenFor: 20 * time.Millisecond, RemindEvery: 100 * time.Millisecond, Logger: log,
		Probe: func(context.Context) error {
			if up.Load() {
				return nil
			}
			return refused
		}})
	defer b.Close()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s; log:\n%s", what, logged.buf.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for episode := 1; episode <= 2; episode++ {
		up.Store(false)
		for range 50 {
			_ = b.Do(func() error { return refused })
		}
		waitFor("two reminders", func() bool {
			return logged.count("circuit breaker still open: test-db", "10.0.0.7:6432", "connection refused") >= 2*episode
		})
		if n := logged.count(`"msg":"circuit breaker open: test-db`); n != episode {
			t.Errorf("episode %d: %d open lines, want %d (one per episode)", episode, n, episode)
		}
		if n := logged.count(`"msg":"circuit breaker open: test-db`, "10.0.0.7:6432"); n != episode {
			t.Errorf("episode %d: the open line does not give the failure", episode)
		}
		up.Store(true)
		waitFor("closed", func() bool { return logged.count("circuit breaker closed: test-db") == episode })
	}
}

// fakePermanentError is a domain error that declares itself permanent.
type fakePermanentError struct{}

func (fakePermanentError) Error() string           { return "invalid: never" }
func (fakePermanentError) PermanentReason() string { return "invalid_field" }

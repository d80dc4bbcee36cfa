package resilience

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/orderpipe/orderpipe/metrics"
)

// ErrOpen is wrapped by calls a breaker refused without trying.
var ErrOpen = errors.New("circuit breaker open")

// BreakerConfig configures a Breaker.
type BreakerConfig struct {
	// Name is the dependency: "database", "redis", "smtp".
	Name string
	// Failures is how many Unavailable failures in a row open the breaker.
	// Defaults to 5.
	Failures uint32
	// OpenFor is how long the breaker stays open before a probe. Defaults to 1s.
	OpenFor time.Duration
	// Probe, if set, is run while the breaker is open, every OpenFor, as the
	// half-open trial (a ping), so that the breaker closes as soon as the
	// dependency answers, without risking a message on it.
	Probe func(ctx context.Context) error
	// Effect says in the log what an open breaker means for the worker.
	// Defaults to "consumers that need it pause".
	Effect string
	// Logger receives one line per transition, and a reminder every
	// RemindEvery while the breaker stays open. Defaults to slog.Default().
	Logger *slog.Logger
	// Metrics receives the breaker's state and transitions. Defaults to a
	// set nobody serves.
	Metrics *metrics.Metrics
	// RemindEvery is how often an open breaker says again why it is open
	// (the last failure: host, port, error), so an operator reading the
	// log of a worker that has waited an hour sees why. Defaults to 30s.
	RemindEvery time.Duration
}

// RemindEveryDefault is how often an open breaker repeats its reason.
const RemindEveryDefault = 30 * time.Second

// Breaker is a circuit breaker for one dependency. Only failures classified
// Unavailable count against it: a constraint violation or a serialization
// failure says nothing about the dependency's health. While it is not
// closed, Wait blocks: consumers that need the dependency stop receiving
// (backpressure) and messages wait in their queue instead of burning
// receives on their way to the DLQ.
type Breaker struct {
	cfg  BreakerConfig
	cb   *gobreaker.CircuitBreaker[struct{}]
	stop context.CancelFunc
	done chan struct{}

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every transition
	lastErr  error         // the last failure that counted against the breaker
	openedAt time.Time     // when the current episode began (zero while closed)
}

// NewBreaker returns a breaker. Its prober runs with ctx's values but not
// its cancellation: it lives until Close, not until the request that opened
// the breaker ends.
func NewBreaker(ctx context.Context, cfg BreakerConfig) *Breaker {
	if cfg.Failures == 0 {
		cfg.Failures = 5
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Effect == "" {
		cfg.Effect = "consumers that need it pause"
	}
	cfg.Metrics = metrics.Or(cfg.Metrics)
	if cfg.RemindEvery <= 0 {
		cfg.RemindEvery = RemindEveryDefault
	}
	b := &Breaker{cfg: cfg, changed: make(chan struct{}), done: make(chan struct{})}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: 1,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
		IsSuccessful: func(err error) bool {
			return err == nil || Classify(err).Class != Unavailable
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			cfg.Metrics.BreakerState.WithLabelValues(name).Set(float64(to))
			cfg.Metrics.BreakerTransitions.WithLabelValues(name, to.String()).Inc()
			b.mu.Lock()
			lastErr := b.lastErr
			switch to {
			case gobreaker.StateOpen:
				if from == gobreaker.StateClosed {
					b.openedAt = time.Now()
					cfg.Logger.Warn("circuit breaker open: "+name+" unavailable; "+cfg.Effect, "breaker", name, "err", lastErr)
				}
			case gobreaker.StateClosed:
				cfg.Logger.Info("circuit breaker closed: "+name+" available again", "breaker", name,
					"unavailable_for", time.Since(b.openedAt).Round(time.Millisecond).String())
				b.openedAt = time.Time{}
			case gobreaker.StateHalfOpen:
				// One call goes through; its outcome opens or closes the breaker.
			}
			close(b.changed)
			b.changed = make(chan struct{})
			b.mu.Unlock()
		},
	})
	cfg.Metrics.BreakerState.WithLabelValues(cfg.Name).Set(0)
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.stop = cancel
	go b.probe(pctx)
	return b
}

// Do runs fn through the breaker. When the breaker is open it fails at once
// with an error wrapping ErrOpen (classified Unavailable).
func (b *Breaker) Do(fn func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) {
		err := fn()
		if err != nil && Classify(err).Class == Unavailable {
			b.mu.Lock()
			b.lastErr = err
			b.mu.Unlock()
		}
		return struct{}{}, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%s: %w", b.cfg.Name, ErrOpen)
	}
	return err
}

func (b *Breaker) getChanged() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// Closed reports whether the breaker lets calls through freely.
func (b *Breaker) Closed() bool { return b.cb.State() == gobreaker.StateClosed }

// Wait blocks while the breaker is not closed, until ctx is done. It
// implements worker.Gate.
func (b *Breaker) Wait(ctx context.Context) error {
	for {
		ch := b.getChanged()
		if b.Closed() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-time.After(b.cfg.OpenFor):
			// gobreaker moves from open to half-open lazily; look again.
		}
	}
}

// probe tries the dependency while the breaker is open, so it closes as
// soon as the dependency answers even when no message is let through, and
// reminds the log why it is open every RemindEvery.
func (b *Breaker) probe(ctx context.Context) {
	defer close(b.done)
	t := time.NewTicker(b.cfg.OpenFor / 2)
	defer t.Stop()
	var reminded time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if b.cb.State() == gobreaker.StateClosed {
			continue
		}
		if b.cfg.Probe != nil {
			_ = b.Do(func() error {
				pctx, cancel := context.WithTimeout(ctx, b.cfg.OpenFor)
				defer cancel()
				return b.cfg.Probe(pctx)
			})
		}
		reminded = b.remind(reminded)
	}
}

// remind logs why the breaker is still open, if RemindEvery has passed
// since the episode began or the last reminder; it returns when it last did.
func (b *Breaker) remind(last time.Time) time.Time {
	b.mu.Lock()
	openedAt, lastErr := b.openedAt, b.lastErr
	b.mu.Unlock()
	since := openedAt
	if last.After(since) {
		since = last
	}
	if openedAt.IsZero() || time.Since(since) < b.cfg.RemindEvery {
		return last
	}
	b.cfg.Logger.Warn("circuit breaker still open: "+b.cfg.Name+" unavailable; "+b.cfg.Effect, "breaker", b.cfg.Name,
		"unavailable_for", time.Since(openedAt).Round(time.Second).String(), "err", lastErr)
	return time.Now()
}

// Close stops the prober.
func (b *Breaker) Close() {
	b.stop()
	<-b.done
}

// All is a gate that waits until every breaker is closed.
type All []*Breaker

// Wait implements worker.Gate.
func (a All) Wait(ctx context.Context) error {
	for {
		for _, b := range a {
			if err := b.Wait(ctx); err != nil {
				return err
			}
		}
		closed := true
		for _, b := range a {
			closed = closed && b.Closed()
		}
		if closed {
			return nil
		}
	}
}

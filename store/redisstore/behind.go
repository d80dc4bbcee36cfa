package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// writeBehind sends the writes nobody waits for (an idempotency key's
// completion: the effect is committed whatever Redis says) in pipelines, so
// that a busy worker pays one Redis round trip for many of them instead of
// one each. A write waits at most writeBehindEvery for company. A write
// lost to a crash, a full queue or a Redis failure costs only a shortcut:
// the key stays "in progress" until its lease runs out, and a later copy
// meets the database ledger.
type writeBehind struct {
	r     *Client
	queue chan behindWrite
	stop  chan struct{}
	done  chan struct{}
}

type behindWrite struct {
	key, value string
	ttl        time.Duration
}

// Write-behind bounds.
const (
	// writeBehindEvery is the longest a write waits in the queue before its
	// pipeline is sent.
	writeBehindEvery = 10 * time.Millisecond
	// writeBehindBatch caps the writes of one pipeline.
	writeBehindBatch = 128
	// writeBehindQueue bounds the writes waiting; when it is full a write
	// is made at once by its caller.
	writeBehindQueue = 4096
	// writeBehindDrain bounds how long Close waits for the last pipeline.
	writeBehindDrain = 2 * time.Second
)

// newWriteBehind starts the writer; ctx's values (not its cancellation)
// reach its pipelines, which run until close.
func newWriteBehind(ctx context.Context, r *Client) *writeBehind {
	w := &writeBehind{r: r, queue: make(chan behindWrite, writeBehindQueue), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(context.WithoutCancel(ctx))
	return w
}

// set queues SET key value PX ttl and reports whether it was queued (false:
// the queue is full or closed, so the caller writes it itself).
func (w *writeBehind) set(key, value string, ttl time.Duration) bool {
	select {
	case <-w.stop:
		return false
	default:
	}
	select {
	case w.queue <- behindWrite{key: key, value: value, ttl: ttl}:
		return true
	default:
		return false
	}
}

func (w *writeBehind) run(ctx context.Context) {
	defer close(w.done)
	batch := make([]behindWrite, 0, writeBehindBatch)
	for {
		select {
		case first := <-w.queue:
			batch = w.collect(append(batch[:0], first))
			w.flush(ctx, batch)
		case <-w.stop:
			w.drain(ctx, batch[:0])
			return
		}
	}
}

// collect adds what arrives within writeBehindEvery, up to a full batch.
func (w *writeBehind) collect(batch []behindWrite) []behindWrite {
	t := time.NewTimer(writeBehindEvery)
	defer t.Stop()
	for len(batch) < writeBehindBatch {
		select {
		case x := <-w.queue:
			batch = append(batch, x)
		case <-t.C:
			return batch
		case <-w.stop:
			return batch
		}
	}
	return batch
}

// drain flushes what is queued at shutdown.
func (w *writeBehind) drain(ctx context.Context, batch []behindWrite) {
	for {
		select {
		case x := <-w.queue:
			if batch = append(batch, x); len(batch) == writeBehindBatch {
				w.flush(ctx, batch)
				batch = batch[:0]
			}
		default:
			if len(batch) > 0 {
				w.flush(ctx, batch)
			}
			return
		}
	}
}

// flush sends batch as one pipeline through the breaker. Each command is
// bounded by the client's timeout; the whole by twice that.
func (w *writeBehind) flush(ctx context.Context, batch []behindWrite) {
	ctx, cancel := context.WithTimeout(ctx, 2*w.r.timeout)
	defer cancel()
	_ = w.r.do("idempotency", func() error {
		_, err := w.r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, x := range batch {
				p.Set(ctx, x.key, x.value, x.ttl)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write behind %d keys: %w", len(batch), err)
		}
		return nil
	})
}

// close flushes what is queued, waiting at most writeBehindDrain.
func (w *writeBehind) close() {
	close(w.stop)
	select {
	case <-w.done:
	case <-time.After(writeBehindDrain):
	}
}

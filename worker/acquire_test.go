package worker

import (
	"context"
	"testing"
	"time"
)

// TestAcquireTakesFullerBatchesWhenBusy: an idle consumer takes a whole
// receive batch at once; a busy one waits (at most receiveLinger) for half
// its slots before it receives, instead of receiving one message per freed
// slot; a cancelled wait gives back what it took.
func TestAcquireTakesFullerBatchesWhenBusy(t *testing.T) {
	ctx := context.Background()
	t.Run("idle", func(t *testing.T) {
		slots := make(chan struct{}, 20)
		if n, ok := acquire(ctx, slots); !ok || n != maxReceiveBatch {
			t.Errorf("acquire on 20 free slots = %d, %v; want %d", n, ok, maxReceiveBatch)
		}
	})
	t.Run("busy, slots freed while it waits", func(t *testing.T) {
		slots := make(chan struct{}, 20)
		take(slots, 18) // 18 messages in flight, 2 free
		freed := make(chan struct{})
		go func() { // 8 more finish, one at a time
			defer close(freed)
			for range 8 {
				<-slots
			}
		}()
		n, ok := acquire(ctx, slots)
		<-freed
		if !ok || n != 10 {
			t.Errorf("acquire with 2 free and 8 freed meanwhile = %d, %v; want 10 (half the slots)", n, ok)
		}
	})
	t.Run("busy, nothing freed", func(t *testing.T) {
		slots := make(chan struct{}, 20)
		take(slots, 19)
		if n, ok := acquire(ctx, slots); !ok || n != 1 {
			t.Errorf("acquire with one free slot = %d, %v; want 1 after the linger", n, ok)
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		slots := make(chan struct{}, 200)
		take(slots, 195)
		ctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		defer cancel()
		for ctx.Err() == nil { // until the context ends during a wait
			n, ok := acquire(ctx, slots)
			if ok {
				release(slots, n)
			}
		}
		if n, ok := acquire(ctx, slots); ok || n != 0 {
			t.Errorf("acquire on a cancelled context = %d, %v; want 0, false", n, ok)
		}
		if len(slots) != 195 {
			t.Errorf("%d slots held after cancelled acquires, want the 195 in flight", len(slots))
		}
	})
}

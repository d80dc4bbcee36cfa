package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/dlq"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/topology"
)

// TestRedriveAllWhileWorkersRunReturns: `orderctl dlq redrive --all` while
// a worker runs, for dead letters that still fail. Each redriven message is
// dead-lettered again within milliseconds under a new message id; the
// redrive must send each of the original ones back exactly once and return,
// not chase the copies for ever.
func TestRedriveAllWhileWorkersRunReturns(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.startWorker(t)
	var want []string
	for i := range 3 {
		ev := s.placed(fmt.Sprintf("loop%d", i), "", "NOPE", 1) // no such product: fails every time
		s.publish(t, ev)
		want = append(want, string(ev.EventID))
	}
	slices.Sort(want)
	sqsc := sqs.NewFromConfig(s.env.AWS)
	for _, q := range s.ap.Queues {
		waitDepth(t, sqsc, q.DLQURL, 3)
	}

	// The code path of `orderctl dlq redrive --all`: every queue, no filter.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	redriven := map[string][]string{} // handler → event ids, in order
	done := make(chan error, 1)
	go func() {
		for _, q := range s.ap.Queues {
			_, err := dlq.RedriveWith(ctx, sqsc, dlq.RedriveConfig{DLQURL: q.DLQURL, SourceURL: q.URL,
				RedrivenFunc: func(l dlq.Letter, _ string) {
					mu.Lock()
					defer mu.Unlock()
					redriven[q.Handler] = append(redriven[q.Handler], eventID(l.Body))
				}})
			if err != nil {
				done <- fmt.Errorf("redrive %s: %w", q.Handler, err)
				return
			}
		}
		done <- nil
	}()
	const bound = time.Minute
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(bound):
		cancel()
		err := <-done
		mu.Lock()
		defer mu.Unlock()
		counts := map[string]int{}
		for h, ids := range redriven {
			counts[h] = len(ids)
		}
		t.Fatalf("redrive --all did not return within %s while the worker ran (cancelled, it returned %v); messages sent back so far per handler: %v (3 each were dead-lettered)", bound, err, counts)
	}
	for _, q := range s.ap.Queues {
		got := slices.Sorted(slices.Values(redriven[q.Handler]))
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: events sent back (-want each once +got):\n%s", q.Handler, d)
		}
		waitDepth(t, sqsc, q.DLQURL, 3) // and they failed again
	}
}

func eventID(body string) string {
	var ev struct {
		EventID events.EventID `json:"event_id"`
	}
	_ = json.Unmarshal([]byte(body), &ev)
	return string(ev.EventID)
}

// waitDepth waits until the queue holds n messages (visible, in flight or
// delayed). It reads the queue's attributes, so it hides nothing.
func waitDepth(t *testing.T, sqsc *sqs.Client, url string, n int64) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		got, err := topology.Depth(context.Background(), sqsc, url)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%s holds %d messages, want %d", url, got, n)
		}
		return nil
	})
}

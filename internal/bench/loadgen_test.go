package bench

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/events"
)

// fakePublisher accepts every batch, or fails those it is told to.
type fakePublisher struct {
	mu      sync.Mutex
	batches [][]events.Event
	failAt  int // the nth call (1-based) fails; 0: none
}

func (p *fakePublisher) Publish(_ context.Context, evs []events.Event) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches = append(p.batches, evs)
	if len(p.batches) == p.failAt {
		return 0, errors.New("throttled")
	}
	return len(evs), nil
}

func TestLoadCount(t *testing.T) {
	pub := &fakePublisher{}
	tr := NewTracker()
	res, err := Load(context.Background(), LoadConfig{
		Count: 95, Generator: NewGenerator(1, "example.com"), Publisher: pub, OnPublished: tr.Record,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 95 || tr.Len() != 95 {
		t.Errorf("published %d, tracked %d; want 95", res.Published, tr.Len())
	}
	for _, b := range pub.batches {
		if len(b) > 10 {
			t.Errorf("a batch of %d: SNS takes at most 10", len(b))
		}
		for _, ev := range b {
			if err := ev.Validate(); err != nil {
				t.Errorf("generated an invalid event: %v", err)
			}
		}
	}
}

// TestLoadRate: a paced load publishes every order, in batches sized for
// its rate. (How close it keeps to the rate is BenchmarkLoadRate's figure.)
func TestLoadRate(t *testing.T) {
	pub := &fakePublisher{}
	res, err := Load(context.Background(), LoadConfig{Rate: 400, Count: 100, Generator: NewGenerator(1, "example.com"), Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 100 {
		t.Errorf("published %d, want 100", res.Published)
	}
	for _, b := range pub.batches {
		if len(b) != BatchSize(400) {
			t.Fatalf("batch of %d at 400/s, want %d", len(b), BatchSize(400))
		}
	}
}

func TestLoadGoesOnAfterAFailure(t *testing.T) {
	pub := &fakePublisher{failAt: 2}
	res, err := Load(context.Background(), LoadConfig{Count: 30, Concurrency: 1, Generator: NewGenerator(1, "example.com"), Publisher: pub})
	if err == nil || !strings.Contains(err.Error(), "throttled") {
		t.Errorf("Load error = %v, want the failure", err)
	}
	if res.Published != 20 || res.Failed != 10 {
		t.Errorf("published %d, failed %d; want 20 and 10", res.Published, res.Failed)
	}
}

func TestLoadNeedsABound(t *testing.T) {
	_, err := Load(context.Background(), LoadConfig{Generator: NewGenerator(1, "x"), Publisher: &fakePublisher{}})
	if err == nil {
		t.Error("Load without a count or a duration did not fail")
	}
}

func TestBatchSize(t *testing.T) {
	for _, tt := range []struct {
		rate float64
		want int
	}{{0, 10}, {5, 1}, {150, 1}, {250, 2}, {1000, 10}, {50000, 10}} {
		if got := BatchSize(tt.rate); got != tt.want {
			t.Errorf("BatchSize(%v) = %d, want %d", tt.rate, got, tt.want)
		}
	}
}

func TestGeneratorShapes(t *testing.T) {
	g := NewGenerator(7, "bench.example.com")
	hot, coupons := 0, 0
	const n = 2000
	for _, ev := range g.Orders(n, time.Now()) {
		if k := len(ev.Order.Items); k < 1 || k > 5 {
			t.Fatalf("order with %d items, want 1..5", k)
		}
		if !strings.HasSuffix(ev.Order.Customer.Email, "@bench.example.com") {
			t.Fatalf("email %s outside the domain", ev.Order.Customer.Email)
		}
		if ev.Order.CouponCode != "" {
			coupons++
		}
		if slices.ContainsFunc(ev.Order.Items, func(it events.Item) bool { return slices.Contains(HotSKUs, it.SKU) }) {
			hot++
		}
	}
	if coupons < n/10 || coupons > n/3 {
		t.Errorf("%d of %d orders with a coupon, want about a fifth", coupons, n)
	}
	if hot < n/3 {
		t.Errorf("%d of %d orders with a hot SKU, want most", hot, n)
	}
}

func TestLineProgress(t *testing.T) {
	var b strings.Builder
	p := newLineProgress(&b, "loadgen", "orders", 100, time.Hour)
	p.Add(40)
	p.Finish()
	if got := b.String(); !strings.HasPrefix(got, "loadgen: 40/100 orders, ") {
		t.Errorf("line = %q", got)
	}
}

func TestEnv(t *testing.T) {
	got := Env([]string{"A=1", "B=2", "DATABASE_URL=x"}, map[string]string{"DATABASE_URL": "y", "C": ""})
	slices.Sort(got)
	want := []string{"A=1", "B=2", "C=", "DATABASE_URL=y"}
	if !slices.Equal(got, want) {
		t.Errorf("Env = %v, want %v", got, want)
	}
}

// BenchmarkLoadRate reports the rate a load paced at 400 orders/s achieves
// (100 orders: the last batch is due after about 240 ms).
func BenchmarkLoadRate(b *testing.B) {
	for b.Loop() {
		start := time.Now()
		res, err := Load(context.Background(), LoadConfig{Rate: 400, Count: 100, Generator: NewGenerator(1, "example.com"), Publisher: &fakePublisher{}})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.Published)/time.Since(start).Seconds(), "orders/s")
	}
}

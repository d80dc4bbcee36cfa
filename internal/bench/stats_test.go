package bench

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPercentile(t *testing.T) {
	vals := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		name string
		p    float64
		want float64
	}{
		{name: "median", p: 50, want: 5},
		{name: "p95 rounds up to a rank", p: 95, want: 10},
		{name: "p10", p: 10, want: 1},
		{name: "max", p: 100, want: 10},
		{name: "tiny p is the min", p: 0.1, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(vals, tt.p); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	if got := Percentile(nil, 99); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
}

func TestSteadyRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var done []time.Time
	// 10 s of ramp-up with 10 completions, then 100/s for 10 s, then a
	// straggler 30 s later: only the middle counts.
	for i := range 10 {
		done = append(done, t0.Add(time.Duration(i)*time.Second))
	}
	for i := range 1000 {
		done = append(done, t0.Add(10*time.Second+time.Duration(i)*10*time.Millisecond))
	}
	done = append(done, t0.Add(50*time.Second))
	got := SteadyRate(done)
	if got < 95 || got > 105 {
		t.Errorf("SteadyRate = %.1f, want about 100", got)
	}
	if got := SteadyRate(done[:1]); got != 0 {
		t.Errorf("SteadyRate of one = %v, want 0", got)
	}
}

func TestSeries(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cs := []Completion{
		{Published: t0, Done: t0.Add(100 * time.Millisecond)},
		{Published: t0.Add(500 * time.Millisecond), Done: t0.Add(1200 * time.Millisecond)},
		{Published: t0.Add(900 * time.Millisecond), Done: t0.Add(1100 * time.Millisecond)},
	}
	want := []Point{
		{T: 0, Published: 3, Done: 1, P99: 100},
		{T: 1, Published: 0, Done: 2, P99: 700},
	}
	if diff := cmp.Diff(want, Series(cs, t0, time.Second)); diff != "" {
		t.Errorf("Series (-want +got):\n%s", diff)
	}
}

func TestLatencyOfAndOverall(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var cs []Completion
	for i := range 100 {
		cs = append(cs, Completion{Published: t0.Add(time.Duration(i) * 10 * time.Millisecond), Done: t0.Add(time.Duration(i)*10*time.Millisecond + time.Duration(i+1)*time.Millisecond)})
	}
	want := Latencies{P50: 50, P95: 95, P99: 99, Max: 100}
	if diff := cmp.Diff(want, LatencyOf(cs)); diff != "" {
		t.Errorf("LatencyOf (-want +got):\n%s", diff)
	}
	// 100 orders from t0 to the last done at 0.99 s + 100 ms.
	if got := OverallRate(cs); got < 91 || got > 92 {
		t.Errorf("OverallRate = %.2f, want about 91.7", got)
	}
}

func TestSoakWindows(t *testing.T) {
	var rss []RSSSample
	for s := 0; s <= 600; s += 5 {
		v := int64(100 << 20)
		if s >= 540 {
			v = 110 << 20
		}
		rss = append(rss, RSSSample{T: float64(s), RSS: v})
	}
	base, end := soakWindows(rss, 10*time.Minute)
	if base != 100<<20 || end != 110<<20 {
		t.Errorf("soakWindows = %d, %d; want %d, %d", base, end, 100<<20, 110<<20)
	}
}

package bench

import (
	"math"
	"slices"
	"time"
)

// Completion is one order's way through: when it was published and when
// the last of its handlers committed.
type Completion struct {
	Published time.Time
	Done      time.Time
}

// Latency is Done - Published.
func (c Completion) Latency() time.Duration { return c.Done.Sub(c.Published) }

// Latencies summarises end-to-end latencies, in milliseconds.
type Latencies struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// steadyFrom and steadyTo bound the steady-state window of a run: the
// completions between these quantiles, so the ramp-up and the tail (the
// last few orders straggling through retries or a long poll) do not count.
const (
	steadyFrom = 0.05
	steadyTo   = 0.95
)

// SteadyRate is the completion rate (per second) in the steady state: the
// completions between the 5th and the 95th percentile of completion times,
// divided by the time between them. With fewer than 20 completions it is
// the overall rate from the first to the last.
func SteadyRate(done []time.Time) float64 {
	n := len(done)
	if n < 2 {
		return 0
	}
	ts := slices.Clone(done)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	lo, hi := 0, n-1
	if n >= 20 {
		lo, hi = int(float64(n)*steadyFrom), int(math.Ceil(float64(n)*steadyTo))-1
	}
	span := ts[hi].Sub(ts[lo]).Seconds()
	if span <= 0 {
		return 0
	}
	return float64(hi-lo) / span
}

// OverallRate is completions divided by the time from the first publish to
// the last completion.
func OverallRate(cs []Completion) float64 {
	if len(cs) == 0 {
		return 0
	}
	first, last := cs[0].Published, cs[0].Done
	for _, c := range cs[1:] {
		if c.Published.Before(first) {
			first = c.Published
		}
		if c.Done.After(last) {
			last = c.Done
		}
	}
	if span := last.Sub(first).Seconds(); span > 0 {
		return float64(len(cs)) / span
	}
	return 0
}

// LatencyOf summarises the latencies of cs.
func LatencyOf(cs []Completion) Latencies {
	ms := make([]float64, len(cs))
	for i, c := range cs {
		ms[i] = float64(c.Latency()) / float64(time.Millisecond)
	}
	slices.Sort(ms)
	return Latencies{P50: Percentile(ms, 50), P95: Percentile(ms, 95), P99: Percentile(ms, 99), Max: Percentile(ms, 100)}
}

// Percentile is the nearest-rank percentile p (0..100] of sorted values; 0
// for none.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Point is one bucket of a run's time series.
type Point struct {
	T         float64 `json:"t_s"`       // bucket start, seconds since the run began
	Published int     `json:"published"` // orders published in the bucket
	Done      int     `json:"done"`      // orders completed in the bucket
	P99       float64 `json:"p99_ms"`    // p99 latency of the orders completed in it
}

// Series buckets cs by publish and completion time from origin.
func Series(cs []Completion, origin time.Time, bucket time.Duration) []Point {
	var pts []Point
	lat := map[int][]float64{}
	at := func(t time.Time) int {
		i := max(int(t.Sub(origin)/bucket), 0)
		for len(pts) <= i {
			pts = append(pts, Point{T: float64(len(pts)) * bucket.Seconds()})
		}
		return i
	}
	for _, c := range cs {
		// at grows pts: take the index before indexing.
		p := at(c.Published)
		pts[p].Published++
		i := at(c.Done)
		pts[i].Done++
		lat[i] = append(lat[i], float64(c.Latency())/float64(time.Millisecond))
	}
	for i, l := range lat {
		slices.Sort(l)
		pts[i].P99 = Percentile(l, 99)
	}
	return pts
}

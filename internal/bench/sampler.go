package bench

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// every calls fn every d until the returned stop is called; stop waits for
// the last call to finish. fn gets ctx's values; only stop ends the calls.
func every(ctx context.Context, d time.Duration, fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		fn(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// ProcSampler reads a process's CPU time and memory every interval.
type ProcSampler struct {
	mu      sync.Mutex
	samples []ProcStat
	stop    func()
}

// SampleProc starts sampling pid every d.
func SampleProc(ctx context.Context, pid int, d time.Duration) *ProcSampler {
	s := &ProcSampler{}
	s.stop = every(ctx, d, func(context.Context) {
		if st, err := ReadProc(pid); err == nil {
			s.mu.Lock()
			s.samples = append(s.samples, st)
			s.mu.Unlock()
		}
	})
	return s
}

// Stop stops sampling and returns the samples.
func (s *ProcSampler) Stop() []ProcStat {
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// ProcUsage summarises samples: the average CPU in cores over the sampled
// span, and the peak RSS.
type ProcUsage struct {
	CPUCores float64 `json:"cpu_cores"`
	PeakRSS  int64   `json:"peak_rss_bytes"`
}

// Usage computes ProcUsage from samples.
func Usage(samples []ProcStat) ProcUsage {
	var u ProcUsage
	if len(samples) == 0 {
		return u
	}
	first, last := samples[0], samples[len(samples)-1]
	if span := last.At.Sub(first.At); span > 0 {
		u.CPUCores = float64(last.CPU-first.CPU) / float64(span)
	}
	for _, s := range samples {
		u.PeakRSS = max(u.PeakRSS, s.HWM, s.RSS)
	}
	return u
}

// ConnSampler counts a database's server connections in pg_stat_activity.
type ConnSampler struct {
	mu           sync.Mutex
	peak, active int
	stop         func()
}

// ConnPeak is the most connections a database had during a run: all
// backends (idle ones included: PgBouncer keeps its server connections
// open), and those running a statement or in a transaction.
type ConnPeak struct {
	Total  int `json:"total"`
	Active int `json:"active"`
}

// SampleConns starts counting the backends of database dbname every d,
// through admin (a direct connection; its own backends carry
// application_name AppName and are not counted).
func SampleConns(ctx context.Context, admin *pgxpool.Pool, dbname string, d time.Duration) *ConnSampler {
	s := &ConnSampler{}
	s.stop = every(ctx, d, func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, d+time.Second)
		defer cancel()
		var total, active int
		err := admin.QueryRow(ctx, `
			SELECT count(*), count(*) FILTER (WHERE state IS DISTINCT FROM 'idle')
			FROM pg_stat_activity
			WHERE datname = $1 AND backend_type = 'client backend' AND application_name <> $2`,
			dbname, AppName).Scan(&total, &active)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.peak, s.active = max(s.peak, total), max(s.active, active)
		s.mu.Unlock()
	})
	return s
}

// Stop stops sampling and returns the peaks.
func (s *ConnSampler) Stop() ConnPeak {
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	return ConnPeak{Total: s.peak, Active: s.active}
}

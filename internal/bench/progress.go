package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress is told how much work was done.
type Progress interface {
	Add(n int)
	// Finish ends the display.
	Finish()
}

type nopProgress struct{}

func (nopProgress) Add(int) {}
func (nopProgress) Finish() {}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// NewProgress returns a progress bar with a live rate when w is a terminal,
// and plain lines every interval otherwise (logs, CI). unit names what is
// counted ("orders"); total is the expected count, or 0 when only a
// duration bounds the work.
func NewProgress(w io.Writer, label, unit string, total int, interval time.Duration) Progress {
	if IsTerminal(w) {
		limit := int64(total)
		if total <= 0 {
			limit = -1 // spinner
		}
		return &barProgress{bar: progressbar.NewOptions64(limit,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString(unit),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)}
	}
	return newLineProgress(w, label, unit, total, interval)
}

type barProgress struct{ bar *progressbar.ProgressBar }

func (p *barProgress) Add(n int) { _ = p.bar.Add(n) }
func (p *barProgress) Finish()   { _ = p.bar.Finish() }

// lineProgress prints "label: N unit, R/s now, R/s overall" lines.
type lineProgress struct {
	w        io.Writer
	label    string
	unit     string
	total    int
	interval time.Duration
	mu       sync.Mutex
	n        int
	start    time.Time
	lastN    int
	lastAt   time.Time
}

func newLineProgress(w io.Writer, label, unit string, total int, interval time.Duration) *lineProgress {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	now := time.Now()
	return &lineProgress{w: w, label: label, unit: unit, total: total, interval: interval, start: now, lastAt: now}
}

func (p *lineProgress) Add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	if now := time.Now(); now.Sub(p.lastAt) >= p.interval {
		p.line(now)
	}
}

func (p *lineProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line(time.Now())
}

func (p *lineProgress) line(now time.Time) {
	of := ""
	if p.total > 0 {
		of = fmt.Sprintf("/%d", p.total)
	}
	cur := float64(p.n-p.lastN) / max(now.Sub(p.lastAt).Seconds(), 1e-9)
	all := float64(p.n) / max(now.Sub(p.start).Seconds(), 1e-9)
	fmt.Fprintf(p.w, "%s: %d%s %s, %.0f/s now, %.0f/s overall\n", p.label, p.n, of, p.unit, cur, all)
	p.lastN, p.lastAt = p.n, now
}

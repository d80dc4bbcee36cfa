package workerenv

import (
	"runtime/debug"

	"github.com/orderpipe/orderpipe/cmd/internal/env"
)

// GCPercentDefault is the garbage collector's target the worker and the
// functions run with when GOGC is not set. Their live heap is a few MiB, so
// Go's 100 collects after every few MiB of garbage: at full load 400 cut
// the worker's CPU per order by 6% (`make bench`: 0.95 -> 0.89 ms) for
// 22 MiB more resident memory (42 -> 64 MiB), far inside the task's 512.
const GCPercentDefault = 400

// TuneGC sets GCPercentDefault unless GOGC is set (the runtime has read it
// then: an operator's value wins). It returns the percent in effect.
func TuneGC(lookup env.LookupFunc) int {
	if _, set := lookup("GOGC"); set {
		p := debug.SetGCPercent(100) // read the runtime's value back...
		debug.SetGCPercent(p)        // ...and leave it as it was
		return p
	}
	debug.SetGCPercent(GCPercentDefault)
	return GCPercentDefault
}

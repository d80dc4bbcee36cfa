package workerenv

import (
	"runtime/debug"
	"testing"
)

// TestTuneGCLeavesAnOperatorsGOGC: without GOGC the worker collects at
// GCPercentDefault; with it, the runtime's reading of it stands.
func TestTuneGCLeavesAnOperatorsGOGC(t *testing.T) {
	was := debug.SetGCPercent(100)
	defer debug.SetGCPercent(was)
	unset := func(string) (string, bool) { return "", false }
	if got := TuneGC(unset); got != GCPercentDefault || debug.SetGCPercent(GCPercentDefault) != GCPercentDefault {
		t.Errorf("without GOGC: TuneGC = %d, want %d in effect", got, GCPercentDefault)
	}
	debug.SetGCPercent(150) // as the runtime would have read GOGC=150
	set := func(k string) (string, bool) { return "150", k == "GOGC" }
	if got := TuneGC(set); got != 150 || debug.SetGCPercent(150) != 150 {
		t.Errorf("with GOGC=150: TuneGC = %d, want 150 left in effect", got)
	}
}

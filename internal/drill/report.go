package drill

import (
	"fmt"
	"strings"
	"time"
)

// Table renders results as a markdown table.
func Table(results []Result) string {
	var b strings.Builder
	b.WriteString("| scenario | published | processed | lost | duplicated | dead-lettered | breaker transitions | recovery (s) | p99 latency in window (ms) | ok | measured |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|\n")
	for _, r := range results {
		recovery := "n/a"
		if r.Recovery >= 0 {
			recovery = fmt.Sprintf("%.2f", r.Recovery.Seconds())
		}
		ok := "yes"
		if !r.OK() {
			ok = "**NO**"
		}
		if r.Recovery >= 0 && r.RecoveryTarget > 0 {
			recovery += fmt.Sprintf(" (≤ %.0f)", r.RecoveryTarget.Seconds())
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s | %d | %s | %s |\n",
			r.Scenario, r.Published, r.Processed, r.Lost, r.Duplicated, r.DeadLettered, r.Transitions,
			recovery, r.P99.Round(time.Millisecond).Milliseconds(), ok, strings.Join(r.Notes, "; "))
	}
	return b.String()
}

package drill_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/internal/drill"
	"github.com/orderpipe/orderpipe/internal/testenv"
)

// TestDrill is the shortened failover drill that runs in `make test`:
// orders flow at a steady rate while, in turn, the primary is stopped, the
// standby promoted and PgBouncer repointed; the database path hangs (no
// reset, no refusal); and the SMTP server reads each email's DATA and
// closes before its verdict. Nothing may be lost, duplicated or
// dead-lettered; orders commit again within 5 s of the new primary
// accepting writes or of the hung path healing; the hang reaches the
// breaker within 10 s; every email dropped after DATA is counted at risk,
// and no customer gets a second copy the metric did not count. (`make
// drill` runs every scenario, longer.)
func TestDrill(t *testing.T) {
	env := testenv.Open(t, "drill")
	// Not t.TempDir(): PostgreSQL runs as the postgres user, who must be
	// able to reach the directory.
	dir, err := os.MkdirTemp("", "orderpipe-drill-") //nolint:usetesting // t.TempDir's parent is private to this user: see above
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("drill state kept in %s (worker.log, pgbouncer.log, pg/*.log)", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("drill state left in %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	scenarios := []string{drill.Promote, drill.DBBlackhole, drill.SMTPResetAfterData}
	results, err := drill.Run(context.Background(), drill.Config{
		Dir:          dir,
		BasePort:     26432, // not make drill's 25432; below the ephemeral range, so no client socket takes it
		AWS:          env.AWS,
		ToxiproxyURL: testenv.ToxiproxyURL,
		Scenarios:    scenarios,
		Before:       3 * time.Second,
		After:        4 * time.Second,
		Fault:        8 * time.Second,
		// An email whose outcome is unknown comes back after its claim's
		// lease: the shortest the claim rules allow with a 3 s send.
		SMTPTimeout:   3 * time.Second,
		EmailClaimTTL: 15 * time.Second,
		Progress:      os.Stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", drill.Table(results))
	if len(results) != len(scenarios) {
		t.Fatalf("got %d results, want %d", len(results), len(scenarios))
	}
	for _, r := range results {
		if r.Published == 0 {
			t.Errorf("%s: the drill published nothing", r.Scenario)
		}
		if r.Lost != 0 || r.Duplicated != 0 || r.DeadLettered != 0 {
			t.Errorf("%s: lost %d, duplicated %d, dead-lettered %d; want 0, 0, 0", r.Scenario, r.Lost, r.Duplicated, r.DeadLettered)
		}
		if r.Scenario != drill.SMTPResetAfterData && (r.Recovery < 0 || r.Recovery > drill.RecoveryTarget) {
			t.Errorf("%s: recovery %s, want within %s", r.Scenario, r.Recovery, drill.RecoveryTarget)
		}
		if len(r.Broken) > 0 {
			t.Errorf("%s: %s", r.Scenario, strings.Join(r.Broken, "; "))
		}
	}
	// (The breaker need not open in the promotion: a quick enough failover
	// is ridden out by the in-process retries alone.)
}

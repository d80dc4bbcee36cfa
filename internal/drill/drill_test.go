package drill_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/internal/drill"
	"github.com/orderpipe/orderpipe/internal/testenv"
)

// TestPromotionDrill is the shortened failover drill that runs in `make
// test`: orders flow at a steady rate while the primary is stopped, the
// standby promoted and PgBouncer repointed. Nothing may be lost, duplicated
// or dead-lettered, and orders must commit again within 5 s of the new
// primary accepting writes. (`make drill` runs every scenario, longer.)
func TestPromotionDrill(t *testing.T) {
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
	results, err := drill.Run(context.Background(), drill.Config{
		Dir:        dir,
		BasePort:   26432, // not make drill's 25432; below the ephemeral range, so no client socket takes it
		AWS:        env.AWS,
		SMTPAddr:   testenv.SMTPAddr,
		MailpitURL: testenv.MailpitURL,
		Scenarios:  []string{drill.Promote},
		Before:     3 * time.Second,
		After:      4 * time.Second,
		Progress:   os.Stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", drill.Table(results))
	if len(results) != 1 {
		t.Fatalf("got %d results, want 1", len(results))
	}
	r := results[0]
	if r.Published == 0 {
		t.Fatal("the drill published nothing")
	}
	if r.Lost != 0 || r.Duplicated != 0 || r.DeadLettered != 0 {
		t.Errorf("lost %d, duplicated %d, dead-lettered %d; want 0, 0, 0", r.Lost, r.Duplicated, r.DeadLettered)
	}
	if r.Recovery < 0 || r.Recovery > drill.RecoveryTarget {
		t.Errorf("recovery %s, want within %s", r.Recovery, drill.RecoveryTarget)
	}
	// (The breaker need not open: a quick enough failover is ridden out by
	// the in-process retries alone.)
}

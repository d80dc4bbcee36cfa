package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/topology"
)

// TestDLQRedriveRefusesALetterOlderThanTheRetention: with
// LEDGER_RETENTION 19d, a redrive sends back the dead letters whose event
// is recent and refuses, by message id and event id, with the event's
// date, one whose event is 20 days old: a copy of it could reach a handler
// after its ledger rows were removed, and be applied twice. The refused
// letter stays in the DLQ and the command fails; a redrive of it by id is
// refused the same way.
func TestDLQRedriveRefusesALetterOlderThanTheRetention(t *testing.T) {
	t.Parallel()
	s := newDLQStack(t)
	now := time.Now().UTC()
	event := func(id string, at time.Time) string {
		return fmt.Sprintf(`{"event_id":%q,"event_type":"order.placed","schema_version":1,"occurred_at":%q}`, id, at.Format(time.RFC3339))
	}
	oldAt := now.Add(-20 * 24 * time.Hour).Truncate(time.Second)
	old := event("0a000000-0000-4000-8000-000000000001", oldAt)
	fresh := event("0a000000-0000-4000-8000-000000000002", now.Add(-time.Hour))
	oldID := s.deadLetter(t, "billing", old, "unknown_sku")
	s.deadLetter(t, "billing", fresh, "unknown_sku")
	s.deadLetter(t, "billing", "not json at all", "malformed_json") // no event time: its letter's, now

	top := topology.Default()
	retention, _ := top.LedgerRetention()
	redrive := func(args ...string) (string, error) {
		t.Helper()
		o, err := parseDLQ(append([]string{"redrive"}, args...))
		if err != nil {
			t.Fatal(err)
		}
		o.retention, o.window = retention, top.RedriveWindow(retention) // as dlqCmd sets them from LEDGER_RETENTION
		var out strings.Builder
		err = runDLQ(t.Context(), s.client, s.ap, &out, o)
		return out.String(), err
	}
	out, err := redrive("--all")
	if err == nil || !strings.Contains(err.Error(), "refused 1 dead letters") {
		t.Errorf("redrive --all: %v, want it to fail, refusing 1", err)
	}
	for _, want := range []string{oldID, "0a000000-0000-4000-8000-000000000001", oldAt.Format(time.RFC3339), "REFUSED", "LEDGER_RETENTION 19d", "2 messages back in their queues"} {
		if !strings.Contains(out, want) {
			t.Errorf("redrive --all printed:\n%s\nwant %q in it", out, want)
		}
	}
	out, err = redrive("--id", oldID)
	if err == nil || !strings.Contains(out, "REFUSED") || !strings.Contains(out, "0 messages back in their queues") {
		t.Errorf("redrive --id of the old letter: %v, printed:\n%s\nwant it refused", err, out)
	}
	if d := cmp.Diff([]string{"not json at all", fresh}, bodies(s.drain(t, s.ap.Queues["billing"].URL))); d != "" {
		t.Errorf("billing queue after the redrive (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{old}, bodies(s.drain(t, s.ap.Queues["billing"].DLQURL))); d != "" {
		t.Errorf("billing DLQ after the redrive (-want +got):\n%s", d)
	}
}

// TestMaintainRemovesWhatIsPastTheRetentionAndReportShowsIt runs the
// orderctl binary on a database of its own: `maintain` removes the ledger
// rows older than LEDGER_RETENTION (19 days by default) and keeps the
// rest; run again before the next run is due, it runs nothing; `report`
// shows the tables' sizes and the last run. A LEDGER_RETENTION shorter
// than the DLQ's retention plus a day is refused by name before anything
// runs.
func TestMaintainRemovesWhatIsPastTheRetentionAndReportShowsIt(t *testing.T) {
	t.Parallel()
	env := testenv.Open(t, "orderctl")
	top, _ := env.Topology(t)
	iso := env.Isolated(t, "maintain", 2)
	if _, err := iso.DB.Pool().Exec(t.Context(), `
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, processed_at)
		SELECT 'billing', gen_random_uuid(), 'order.placed', 'o' || i, '\x00', now() - interval '30 days' FROM generate_series(1, 50) i;
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint)
		SELECT 'billing', gen_random_uuid(), 'order.placed', 'n' || i, '\x00' FROM generate_series(1, 10) i`); err != nil {
		t.Fatal(err)
	}
	bin := buildOrderctl(t)
	vars := []string{
		"AWS_ENDPOINT_URL=" + testenv.Endpoint, "AWS_REGION=" + testenv.Region, "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"ORDERPIPE_NAME_PREFIX=" + strings.TrimSuffix(top.Topic, topology.Default().Topic), "DATABASE_URL=" + iso.DBURL,
	}

	out, code := runOrderctl(t, bin, vars, "maintain")
	t.Logf("orderctl maintain: exit %d\n%s", code, out)
	if code != 0 || !strings.Contains(out, "removed what is older than 19d: 50 ledger rows") {
		t.Errorf("maintain: exit %d, want 0 and 50 ledger rows removed", code)
	}
	out, code = runOrderctl(t, bin, vars, "maintain")
	if code != 0 || !strings.Contains(out, "not run") {
		t.Errorf("maintain again at once: exit %d\n%s\nwant 0 and nothing run (not due)", code, out)
	}
	out, code = runOrderctl(t, bin, vars, "report", "--json")
	var rep Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("report --json: exit %d\n%s", code, out)
	}
	if len(rep.Tables) != 3 || rep.Tables[0].Table != "processed_events" || rep.Tables[0].Rows != 10 || rep.Tables[0].Bytes == 0 {
		t.Errorf("report's tables %+v: want the ledger first, with its 10 rows left and its size", rep.Tables)
	}
	if rep.Maintenance == nil || rep.Maintenance.LastSuccess.IsZero() || rep.Maintenance.LastRemoved["processed_events"] != 50 {
		t.Errorf("report's maintenance %+v: want the last run, which removed 50 ledger rows", rep.Maintenance)
	}

	out, code = runOrderctl(t, bin, append(vars, "LEDGER_RETENTION=14d"), "maintain")
	if code != 2 || !strings.Contains(out, "LEDGER_RETENTION") || !strings.Contains(out, "want 15d or more") {
		t.Errorf("maintain with LEDGER_RETENTION=14d: exit %d\n%s\nwant 2, refused by name", code, out)
	}
}

package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
)

// backdate is how far the tests' old rows lie in the past, and retention
// the retention they run with: old rows are past it, fresh ones are not.
const (
	backdate  = 2 * time.Hour
	retention = time.Hour
)

// oldLedgerRows writes n ledger rows processed backdate ago (and fresh
// more rows processed now) and returns the old rows' event ids.
func oldLedgerRows(t *testing.T, env *testenv.Env, n, fresh int) []string {
	t.Helper()
	var ids []string
	err := pgx.BeginFunc(context.Background(), env.DB.Pool(), func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), `
			INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, processed_at)
			SELECT 'billing', gen_random_uuid(), 'order.placed', 'ord-old-' || i, '\x00',
			       now() - $2 * interval '1 millisecond' - i * interval '1 millisecond'
			FROM generate_series(1, $1) i
			RETURNING event_id::text`, n, backdate.Milliseconds())
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		_, err = tx.Exec(context.Background(), `
			INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint)
			SELECT 'billing', gen_random_uuid(), 'order.placed', 'ord-new-' || i, '\x00' FROM generate_series(1, $1) i`, fresh)
		return err
	})
	if err != nil {
		t.Fatalf("write ledger rows: %v", err)
	}
	return ids
}

func count(t *testing.T, env *testenv.Env, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := env.DB.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestRetentionRemovesOnlyWhatIsPastIt: ledger rows processed before the
// cutoff go, in batches; newer ones stay. An email claim goes once it was
// made and settled before the cutoff (sent, refused, or a lease that ran
// out): a claim sent after the cutoff stays with its ledger row, and so
// does a live one. Sent outbox rows go, unsent ones never. A run bounded
// by MaxRows says it is not complete, and the next one goes on.
func TestRetentionRemovesOnlyWhatIsPastIt(t *testing.T) {
	t.Parallel()
	env := testenv.Open(t, "store").Isolated(t, "retention", 4)
	ctx := context.Background()
	oldLedgerRows(t, env, 1000, 300)
	old := backdate.Milliseconds()
	if _, err := env.DB.Pool().Exec(ctx, `
		INSERT INTO notifications (event_id, order_id, kind, recipient, message_id, status, created_at, sent_at, lease_until) VALUES
		  (gen_random_uuid(), 'gone-sent',      'order.placed', 'a@x', 'm', 'sent',    now() - $1 * interval '1 millisecond', now() - $1 * interval '1 millisecond', NULL),
		  (gen_random_uuid(), 'gone-failed',    'order.placed', 'a@x', 'm', 'failed',  now() - $1 * interval '1 millisecond', NULL, NULL),
		  (gen_random_uuid(), 'gone-ran-out',   'order.placed', 'a@x', 'm', 'unknown', now() - $1 * interval '1 millisecond', NULL, now() - $1 * interval '1 millisecond' + interval '2 minutes'),
		  (gen_random_uuid(), 'kept-sent-late', 'order.placed', 'a@x', 'm', 'sent',    now() - $1 * interval '1 millisecond', now() - interval '10 minutes', NULL),
		  (gen_random_uuid(), 'kept-live',      'order.placed', 'a@x', 'm', 'sending', now() - $1 * interval '1 millisecond', NULL, now() + interval '1 minute'),
		  (gen_random_uuid(), 'kept-new',       'order.placed', 'a@x', 'm', 'sent',    now(), clock_timestamp(), NULL)`, old); err != nil {
		t.Fatal(err)
	}
	if _, err := env.DB.Pool().Exec(ctx, `
		INSERT INTO outbox (event_id, event_type, body, topic, order_id, created_at, sent_at) VALUES
		  (gen_random_uuid(), 'order.cancelled', '{}', 't', 'gone-sent',   now() - $1 * interval '1 millisecond', now() - $1 * interval '1 millisecond'),
		  (gen_random_uuid(), 'order.cancelled', '{}', 't', 'kept-unsent', now() - $1 * interval '1 millisecond', NULL),
		  (gen_random_uuid(), 'order.cancelled', '{}', 't', 'kept-new',    now(), now())`, old); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	batches := map[string][]int{}
	cfg := store.RetentionConfig{Retention: retention, BatchSize: 300, MaxRows: 700, Pause: time.Millisecond,
		BatchFunc: func(table string, rows int, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			batches[table] = append(batches[table], rows)
		}}
	first, err := env.DB.RemoveExpired(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.Complete || first.Removed[store.TableLedger] != 700 {
		t.Errorf("bounded run: removed %v, complete %v; want 700 ledger rows and not complete", first.Removed, first.Complete)
	}
	cfg.MaxRows = 0
	second, err := env.DB.RemoveExpired(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{store.TableLedger: 300, store.TableClaims: 3, store.TableOutbox: 1}
	if diff := cmp.Diff(want, second.Removed); diff != "" || !second.Complete {
		t.Errorf("second run removed (-want +got):\n%s complete %v", diff, second.Complete)
	}
	for _, b := range batches[store.TableLedger] {
		if b > 300 {
			t.Errorf("a ledger batch removed %d rows, more than BatchSize 300", b)
		}
	}
	if n := count(t, env, `SELECT count(*) FROM processed_events`); n != 300 {
		t.Errorf("%d ledger rows left, want the 300 fresh ones", n)
	}
	var kept []string
	for _, q := range []string{`SELECT order_id FROM notifications ORDER BY order_id`, `SELECT order_id FROM outbox ORDER BY order_id`} {
		rows, _ := env.DB.Pool().Query(ctx, q)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, ids...)
	}
	if diff := cmp.Diff([]string{"kept-live", "kept-new", "kept-sent-late", "kept-new", "kept-unsent"}, kept); diff != "" {
		t.Errorf("claims and outbox rows kept (-want +got):\n%s", diff)
	}

	sizes, err := env.DB.TableSizes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 || sizes[0].Table != store.TableLedger || sizes[0].Bytes <= 0 || sizes[0].Rows < 0 {
		t.Errorf("table sizes %+v: want the ledger, the claims and the outbox with their bytes", sizes)
	}
}

// TestRemovalSkipsWhatAHandlerHoldsAndHoldsOneBatchAtMost: a row past
// the retention that a transaction holds is skipped, never waited for (the
// removal does not queue behind a handler); and a handler's write to a row
// a batch is removing waits for that batch alone, whose size then shrinks
// towards the target. The batches are slowed by a trigger (this database
// only) so that the wait is long enough to see.
func TestRemovalSkipsWhatAHandlerHoldsAndHoldsOneBatchAtMost(t *testing.T) {
	t.Parallel()
	env := testenv.Open(t, "store").Isolated(t, "retention_locks", 4)
	ctx := context.Background()
	ids := oldLedgerRows(t, env, 200, 0)

	// A transaction holds the oldest row (a late duplicate, say): the run
	// neither waits for it nor removes it.
	tx, err := env.DB.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := ids[len(ids)-1] // the oldest: the first a batch would take
	if _, err := tx.Exec(ctx, `SELECT 1 FROM processed_events WHERE handler = 'billing' AND event_id = $1 FOR UPDATE`, held); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second) // a run that waited for the transaction would outlive this
	res, err := env.DB.RemoveExpired(rctx, store.RetentionConfig{Retention: retention})
	cancel()
	if err != nil {
		t.Fatalf("removal while a row is held: %v", err)
	}
	if res.Removed[store.TableLedger] != 199 {
		t.Errorf("removed %v, want 199 ledger rows: all but the held one, which is left for the next run", res.Removed)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// Slow deletes: 2 ms a row, so a batch of 100 takes 200 ms.
	if _, err := env.DB.Pool().Exec(ctx, `
		CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN OLD; END $$;
		CREATE TRIGGER slow_delete BEFORE DELETE ON processed_events FOR EACH ROW EXECUTE FUNCTION slow_delete();`); err != nil {
		t.Fatal(err)
	}
	oldLedgerRows(t, env, 299, 0) // with the held one, 300 to remove
	var (
		mu    sync.Mutex
		sizes []int
		took  []time.Duration
	)
	done := make(chan error, 1)
	go func() {
		_, err := env.DB.RemoveExpired(ctx, store.RetentionConfig{Retention: retention, BatchSize: 100, BatchTarget: 20 * time.Millisecond,
			BatchFunc: func(_ string, rows int, d time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				sizes, took = append(sizes, rows), append(took, d)
			}})
		done <- err
	}()
	// Wait (polling, within 10 s) for the first batch to be running.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if count(t, env, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE $1`, store.RetentionMarker+"%") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no retention batch seen running within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The handler's write: a copy of the oldest event, the first batch's.
	start := time.Now()
	if _, err := env.DB.Pool().Exec(ctx, `INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint)
		VALUES ('billing', $1, 'order.placed', 'ord-copy', '\x00') ON CONFLICT DO NOTHING`, held); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("the handler's write waited %s; batches %v took %v", waited, sizes, took)
	// The bound: one batch (plus the scheduling of a loaded machine).
	if len(took) == 0 || waited > took[0]+500*time.Millisecond {
		t.Errorf("the handler's write waited %s, more than the batch it met (%v) allows", waited, took)
	}
	if len(sizes) < 3 || sizes[0] != 100 || sizes[1] != 50 {
		t.Errorf("batch sizes %v: want 100, then halved while a batch takes over its 20ms target", sizes)
	}
	if n := count(t, env, `SELECT count(*) FROM processed_events WHERE event_id <> $1`, held); n != 0 {
		t.Errorf("%d old rows left", n)
	}
}

// TestMaintenanceLeaseHasOneHolderAtATime: the maintenance row lets one
// holder run at a time, through the pool alone (no session state): a
// second holder is refused while the first holds the lease, a run that is
// not due is not taken (unless forced), a holder that lost its lease
// cannot renew or record a run, and a lease that ran out can be taken.
func TestMaintenanceLeaseHasOneHolderAtATime(t *testing.T) {
	t.Parallel()
	env := testenv.Open(t, "store").Isolated(t, "lease", 2)
	ctx := context.Background()
	mt := store.NewMaintenance(env.DB, "retention")
	take := func(holder string, lease time.Duration, force bool) bool {
		t.Helper()
		ok, err := mt.Take(ctx, holder, lease, force)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !take("a", time.Minute, false) {
		t.Fatal("a could not take a lease nobody held")
	}
	if take("b", time.Minute, false) || take("b", time.Minute, true) {
		t.Error("b took the lease a holds")
	}
	if err := mt.Renew(ctx, "b", time.Minute); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("b renewed a's lease: %v", err)
	}
	if err := mt.Finish(ctx, "a", map[string]int64{store.TableLedger: 3}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if take("b", time.Minute, false) {
		t.Error("b took a run that is due only in an hour")
	}
	if !take("b", 10*time.Millisecond, true) {
		t.Fatal("b could not force a run nobody held")
	}
	// Wait (polling, within 5 s) for b's 10 ms lease to run out on the
	// database's clock.
	testenv.Eventually(t, 5*time.Second, func() error {
		if !take("a", time.Minute, true) {
			return errors.New("b's lease has not run out")
		}
		return nil
	})
	if err := mt.Finish(ctx, "b", nil, 0); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("b recorded a run after losing its lease: %v", err)
	}
	st, found, err := mt.Status(ctx)
	if err != nil || !found {
		t.Fatalf("status: %v (found %v)", err, found)
	}
	if st.Holder != "a" || st.LastSuccess.IsZero() || st.LastRemoved[store.TableLedger] != 3 {
		t.Errorf("status %+v: want a holding it, and a's run recorded", st)
	}
}

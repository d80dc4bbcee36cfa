package faults_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/internal/faults"
	"github.com/orderpipe/orderpipe/internal/testenv"
)

// TestCommitCutter: through the cutter a transaction commits as usual;
// with its rate at 1, the server commits and the client's COMMIT fails on
// a reset connection, so the client cannot know what the server knows.
func TestCommitCutter(t *testing.T) {
	env := testenv.Open(t, "faults")
	ctx := context.Background()
	if _, err := env.DB.Pool().Exec(ctx, `CREATE TABLE IF NOT EXISTS cut_test (id text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	cc, err := pgx.ParseConfig(env.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := faults.NewCommitCutter(ctx, cc.Host+":"+itoa(int(cc.Port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cc.Host, cc.Port = "127.0.0.1", port(t, c.Addr)
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec // as the store runs behind PgBouncer
	insert := func(id string) error {
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO cut_test VALUES ($1)`, id)
			return err
		})
	}
	if err := insert("kept"); err != nil {
		t.Fatalf("commit through the cutter: %v", err)
	}
	c.SetRate(1)
	err = insert("cut")
	if err == nil {
		t.Fatal("a cut commit reported success")
	}
	t.Logf("the cut commit: %v", err)
	// A pipelined batch is one implicit transaction: its Sync commits it.
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	b := &pgx.Batch{}
	b.Queue(`SELECT 1`)
	b.Queue(`INSERT INTO cut_test VALUES ($1)`, "batch")
	if err := conn.SendBatch(ctx, b).Close(); err == nil {
		t.Fatal("a cut batch reported success")
	}
	if c.Commits() != 3 || c.Cut() != 2 {
		t.Errorf("commits %d, cut %d; want 3, 2", c.Commits(), c.Cut())
	}
	var n int
	if err := env.DB.Pool().QueryRow(ctx, `SELECT count(*) FROM cut_test WHERE id IN ('kept', 'cut', 'batch')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d rows committed, want 3: the cut commits must reach the server", n)
	}
}

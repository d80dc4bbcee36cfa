package testenv

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/store"
)

// Isolated returns a copy of e with a database of its own, e's name plus
// "_" and name (dropped and created, then migrated), for a test whose work
// reaches every row of a table and so would reach other tests' rows in
// the binary's shared database: a retention squeezed to seconds removes
// every ledger row older than that. The database is dropped when the test
// ends. Its pool holds at most maxConns connections.
func (e *Env) Isolated(t testing.TB, name string, maxConns int32) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbName := e.DBName + "_" + name
	recreate := func(ctx context.Context, create bool) error {
		admin, err := pgx.Connect(ctx, AdminDatabaseURL)
		if err != nil {
			return fmt.Errorf("connect to PostgreSQL: %w", err)
		}
		defer admin.Close(ctx)
		qs := []string{fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{dbName}.Sanitize())}
		if create {
			qs = append(qs, "CREATE DATABASE "+pgx.Identifier{dbName}.Sanitize())
		}
		for _, q := range qs {
			if _, err := admin.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}
	if err := recreate(ctx, true); err != nil {
		t.Fatalf("isolated database: %v", err)
	}
	iso := *e
	iso.DBName = dbName
	iso.DBURL, iso.DirectURL = withPath(t, e.DBURL, dbName), withPath(t, e.DirectURL, dbName)
	db, err := store.Open(ctx, store.Config{URL: iso.DBURL, MaxConns: maxConns})
	if err != nil {
		t.Fatalf("isolated database: %v", err)
	}
	iso.DB = db
	t.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := recreate(ctx, false); err != nil {
			t.Logf("drop the isolated database %s: %v", dbName, err)
		}
	})
	if err := db.Migrate(ctx, discardLogger()); err != nil {
		t.Fatalf("isolated database: migrate: %v", err)
	}
	return &iso
}

func withPath(t testing.TB, rawURL, db string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("database URL: %v", err)
	}
	u.Path = "/" + db
	return u.String()
}

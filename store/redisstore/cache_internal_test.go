package redisstore

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/catalog"
)

// TestStaleFillCannotOverwriteNewerEntry plays the race of cache-aside: a
// reader loads version 1 from the database, a change writes version 2 to
// the cache, then the slow reader writes back version 1. The entry must
// keep version 2.
func TestStaleFillCannotOverwriteNewerEntry(t *testing.T) {
	r := openLocal(t)
	defer func() { _, _ = r.Purge(context.Background()); r.Close() }()
	c := &ProductCache{r: r, ttl: time.Minute}
	ctx := context.Background()
	c.put(ctx, catalog.Product{SKU: "LAMP", Name: "Lamp", Price: 3999}, 2)
	c.put(ctx, catalog.Product{SKU: "LAMP", Name: "Lamp", Price: 4999}, 1) // the slow reader
	got, err := r.rdb.Get(ctx, r.key("product", "LAMP")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := decodeCached("LAMP", got); !ok || p.Price != 3999 || got[:2] != "2|" {
		t.Errorf("entry = %q, want version 2 at 3999", got)
	}
}

// openLocal opens the stack's Redis (REDIS_URL, or the local default) under
// a prefix of its own, for the package's internal tests; the caller closes
// it. It skips under -short.
func openLocal(t *testing.T) *Client {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped by -short")
	}
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	r, err := Open(context.Background(), Config{URL: url, KeyPrefix: "orderpipe-test:" + uuid.NewString()[:8] + ":"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderpipe/orderpipe/events"
)

// DoneTTLDefault is how long Redis remembers a completed (handler, event):
// a duplicate arriving within it is acknowledged without a database round
// trip. Later duplicates still hit the database ledger, which never forgets.
const DoneTTLDefault = 24 * time.Hour

// Keys is the Redis fast path in front of the database ledger. Redis is
// never the last word: a lost key costs a database round trip, nothing more.
//
// Key: orderpipe:done:{handler}:{event_id} = "1", TTL DoneTTL.
type Keys struct {
	rdb     *redis.Client
	doneTTL time.Duration
}

// OpenRedis connects to url (redis://host:port/db). Like the pool, it does
// not fail when Redis is down.
func OpenRedis(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("store: REDIS_URL is not a valid redis:// URL")
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, 500*time.Millisecond, 500*time.Millisecond
	opt.MaxRetries = 1
	return redis.NewClient(opt), nil
}

// NewKeys returns the idempotency key store.
func NewKeys(rdb *redis.Client, doneTTL time.Duration) *Keys {
	if doneTTL <= 0 {
		doneTTL = DoneTTLDefault
	}
	return &Keys{rdb: rdb, doneTTL: doneTTL}
}

func doneKey(handler string, id events.EventID) string {
	return "orderpipe:done:" + handler + ":" + string(id)
}

// Done reports whether the handler is known to have completed the event.
func (k *Keys) Done(ctx context.Context, handler string, id events.EventID) (bool, error) {
	n, err := k.rdb.Exists(ctx, doneKey(handler, id)).Result()
	if err != nil {
		return false, fmt.Errorf("redis exists %s: %w", doneKey(handler, id), err)
	}
	return n == 1, nil
}

// MarkDone remembers that the handler completed the event.
func (k *Keys) MarkDone(ctx context.Context, handler string, id events.EventID) error {
	if err := k.rdb.Set(ctx, doneKey(handler, id), "1", k.doneTTL).Err(); err != nil {
		return fmt.Errorf("redis set %s: %w", doneKey(handler, id), err)
	}
	return nil
}

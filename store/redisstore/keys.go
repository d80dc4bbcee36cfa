package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers"
)

// Idempotency key defaults.
const (
	// LeaseDefault is how long an in-progress key lives unless renewed. The
	// worker renews it every third of that while the handler runs, so it
	// only runs out when the worker died: then a redelivered copy may take
	// over after at most this long.
	LeaseDefault = 30 * time.Second
	// RetentionDefault is how long a completed key is kept: a duplicate
	// within it is acknowledged without the database. Later duplicates
	// still meet the database ledger, which never forgets.
	RetentionDefault = 24 * time.Hour
)

// Keys is the Redis idempotency store, implementing handlers.KeyStore.
//
// One key per handler and event, {prefix}idem:{handler}:{event_id}:
//
//	"L|<fingerprint>|<token>"  in progress, TTL the lease (renewed while running)
//	"D|<fingerprint>"          completed, TTL the retention
//
// The fingerprint (hex SHA-256 of the canonical event) tells a duplicate
// from a conflicting reuse of the event_id. Every transition is one Lua
// script on one key: atomic, and safe on Redis Cluster.
type Keys struct {
	r         *Client
	lease     time.Duration
	retention time.Duration
}

// NewKeys returns the idempotency store; zero durations take the defaults.
func NewKeys(r *Client, lease, retention time.Duration) *Keys {
	if lease <= 0 {
		lease = LeaseDefault
	}
	if retention <= 0 {
		retention = RetentionDefault
	}
	return &Keys{r: r, lease: lease, retention: retention}
}

// LeaseTTL implements handlers.KeyStore.
func (k *Keys) LeaseTTL() time.Duration { return k.lease }

// begin: take the lease if the key is free; otherwise report done, busy
// (with the holder's remaining lease) or conflict.
var beginScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'L|' .. ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
  return {'acquired', 0}
end
if string.sub(v, 3, 2 + string.len(ARGV[1])) ~= ARGV[1] then
  return {'conflict', 0}
end
if string.sub(v, 1, 1) == 'D' then
  return {'done', 0}
end
return {'busy', redis.call('PTTL', KEYS[1])}
`)

// renew extends the lease if this token still holds it.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// release deletes the lease if this token still holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

var outcomes = map[string]handlers.Outcome{
	"acquired": handlers.Acquired,
	"done":     handlers.Done,
	"busy":     handlers.Busy,
	"conflict": handlers.Conflict,
}

// Begin implements handlers.KeyStore.
func (k *Keys) Begin(ctx context.Context, handler string, id events.EventID, fingerprint string) (handlers.Lease, error) {
	l := handlers.Lease{Key: k.r.key("idem", handler, string(id)), Token: uuid.NewString(), Fingerprint: fingerprint}
	var res []any
	err := k.r.do("idempotency", func() (err error) {
		if res, err = beginScript.Run(ctx, k.r.rdb, []string{l.Key}, fingerprint, l.Token, k.lease.Milliseconds()).Slice(); err != nil {
			return fmt.Errorf("begin script: %w", err)
		}
		return nil
	})
	if err != nil {
		return l, fmt.Errorf("begin %s: %w", l.Key, err)
	}
	name, _ := res[0].(string)
	o, ok := outcomes[name]
	if !ok {
		return l, fmt.Errorf("begin %s: unexpected reply %v", l.Key, res)
	}
	l.Outcome = o
	if ms, _ := res[1].(int64); ms > 0 {
		l.Remaining = time.Duration(ms) * time.Millisecond
	}
	return l, nil
}

// held is the value of the key while l holds the lease.
func held(l handlers.Lease) string { return "L|" + l.Fingerprint + "|" + l.Token }

// Renew implements handlers.KeyStore. handlers.ErrLeaseLost says the lease
// ran out and may be someone else's now.
func (k *Keys) Renew(ctx context.Context, l handlers.Lease) error {
	var n int64
	err := k.r.do("idempotency", func() (err error) {
		if n, err = renewScript.Run(ctx, k.r.rdb, []string{l.Key}, held(l), k.lease.Milliseconds()).Int64(); err != nil {
			return fmt.Errorf("renew script: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("renew %s: %w", l.Key, err)
	}
	if n == 0 {
		return fmt.Errorf("renew %s: %w", l.Key, handlers.ErrLeaseLost)
	}
	return nil
}

// Complete implements handlers.KeyStore: the effect is committed, so the key
// says done whoever holds the lease now. It does not wait for Redis: the
// write goes out with others in one pipeline within 10 ms (writeBehind),
// and until then a copy finds the key in progress and comes back later.
// Only when the queue is full does it write at once. In a Lambda function a
// completion queued as the invocation ends goes out when the environment
// next runs, or is lost with it: a later copy then meets the ledger.
func (k *Keys) Complete(ctx context.Context, l handlers.Lease) error {
	if k.r.behind.set(l.Key, "D|"+l.Fingerprint, k.retention) {
		return nil
	}
	err := k.r.do("idempotency", func() error {
		return k.r.rdb.Set(ctx, l.Key, "D|"+l.Fingerprint, k.retention).Err()
	})
	if err != nil {
		return fmt.Errorf("complete %s: %w", l.Key, err)
	}
	return nil
}

// Release implements handlers.KeyStore: the handler failed, so a retry need
// not wait out the lease.
func (k *Keys) Release(ctx context.Context, l handlers.Lease) error {
	err := k.r.do("idempotency", func() error {
		return releaseScript.Run(ctx, k.r.rdb, []string{l.Key}, held(l)).Err()
	})
	if err != nil {
		return fmt.Errorf("release %s: %w", l.Key, err)
	}
	return nil
}

package app_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
)

// TestConnectionBudgetUnderBurst runs three workers (pools of 10, 30 in all
// against PgBouncer's 20; one in the simple-protocol mode used behind RDS
// Proxy) through PgBouncer in transaction mode against a burst of 1,000
// orders (the budget is reached in the burst's first second). Sampled every
// 50 ms, PostgreSQL never serves more backends than PgBouncer's pool allows,
// no worker holds more connections than its pool size, and every order is
// billed, reserved and emailed exactly once. It runs alone (not parallel):
// it counts every backend of the test database.
func TestConnectionBudgetUnderBurst(t *testing.T) {
	const (
		orders   = 1000
		workers  = 3
		maxConns = 10
	)
	s := newStack(t)
	s.addProducts(t,
		catalog.Product{SKU: "P1", Name: "Promo 1", Price: 999, Stock: 1_000_000},
		catalog.Product{SKU: "P2", Name: "Promo 2", Price: 1999, Stock: 1_000_000},
		catalog.Product{SKU: "P3", Name: "Promo 3", Price: 2999, Stock: 1_000_000},
	)
	poolSize := pgbouncerPoolSize(t)
	for i := range workers {
		s.startWorker(t, func(c *app.Config) {
			c.Store = store.Config{URL: withAppName(t, s.env.DBURL, fmt.Sprintf("budget-w%d", i)), MaxConns: maxConns}
			if i == 0 {
				c.Store.StatementMode = "simple_protocol" // what RDS Proxy gets
			}
		})
	}
	sampler := startSampler(t, s.env.DBName)

	rng := rand.New(rand.NewPCG(7, 7))
	evs := make([]events.Event, orders)
	for i := range evs {
		evs[i] = s.placed(fmt.Sprintf("b%d", i), "", []string{"P1", "P2", "P3"}[rng.IntN(3)], 1)
	}
	s.publish(t, evs...)
	s.waitProcessedWithin(t, 2*time.Minute, all3(orders), orders)
	waitQueuesEmptyWithin(t, s, time.Minute)
	maxBackends, maxClients, err := sampler.stop()
	if err != nil {
		t.Fatalf("sampling connections: %v", err)
	}

	if maxBackends > poolSize || maxBackends == 0 {
		t.Errorf("PostgreSQL served up to %d backends for the database; PgBouncer's pool is %d", maxBackends, poolSize)
	}
	for i := range workers {
		name := fmt.Sprintf("budget-w%d", i)
		if n := maxClients[name]; n > maxConns || n == 0 {
			t.Errorf("worker %s held up to %d connections to PgBouncer; its pool is %d", name, n, maxConns)
		}
	}
	like := s.prefix + "%"
	for _, c := range []struct{ name, query string }{
		{"invoices", `SELECT count(*) FROM invoices WHERE order_id LIKE $1`},
		{"stock movements", `SELECT count(*) FROM stock_movements WHERE order_id LIKE $1`},
		{"emails recorded", `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND status = 'sent'`},
	} {
		if n := s.queryInt(t, c.query, like); n != orders {
			t.Errorf("%s = %d, want %d", c.name, n, orders)
		}
	}
	t.Logf("%d orders through PgBouncer (pool %d) by %d workers of %d connections: peak %d backends, peak clients per worker %v",
		orders, poolSize, workers, maxConns, maxBackends, maxClients)
}

// TestBothDatabaseRoutesWork runs 50 orders through a worker connected
// straight to PostgreSQL (DB_PROXY=none, cached statements) and 50 through
// PgBouncer (unnamed statements): both routes bill every order once. (Their
// rates are `make bench`'s business.)
func TestBothDatabaseRoutesWork(t *testing.T) {
	t.Parallel()
	const orders = 50
	for _, route := range []string{"direct", "pgbouncer"} {
		t.Run(route, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.addProducts(t, catalog.Product{SKU: "P", Name: "Promo", Price: 999, Stock: 1_000_000})
			s.startWorker(t, func(c *app.Config) {
				c.Store = store.Config{URL: s.env.DBURL, MaxConns: 8}
				if route == "direct" {
					c.Store = store.Config{URL: s.env.DirectURL, Proxy: store.ProxyNone, MaxConns: 8}
				}
			})
			evs := make([]events.Event, orders)
			for i := range evs {
				evs[i] = s.placed(fmt.Sprintf("r%d", i), "", "P", 1)
			}
			s.publish(t, evs...)
			s.waitProcessedWithin(t, time.Minute, all3(orders), orders)
			if n := s.queryInt(t, `SELECT count(*) FROM invoices WHERE order_id LIKE $1`, s.prefix+"%"); n != orders {
				t.Errorf("invoices = %d, want %d", n, orders)
			}
		})
	}
}

func withAppName(t *testing.T, dbURL, name string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgbouncerAdmin connects to PgBouncer's admin console (simple protocol only).
func pgbouncerAdmin(t *testing.T) *pgx.Conn {
	t.Helper()
	u, err := url.Parse(testenv.ProxyDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/pgbouncer"
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("PgBouncer admin console: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// showRows runs a SHOW command on the admin console and returns its rows
// as column-name maps of text.
func showRows(ctx context.Context, conn *pgx.Conn, cmd string) ([]map[string]string, error) {
	rows, err := conn.Query(ctx, cmd)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		vals := rows.RawValues()
		m := make(map[string]string, len(vals))
		for i, fd := range rows.FieldDescriptions() {
			m[fd.Name] = string(vals[i])
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func pgbouncerPoolSize(t *testing.T) int {
	t.Helper()
	rows, err := showRows(context.Background(), pgbouncerAdmin(t), "SHOW CONFIG")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r["key"] == "default_pool_size" {
			n, err := strconv.Atoi(r["value"])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("PgBouncer's SHOW CONFIG has no default_pool_size")
	return 0
}

type sampler struct {
	stopc       chan struct{}
	done        sync.WaitGroup
	maxBackends int
	maxClients  map[string]int
	samples     int
	err         error // the first failed sample
}

// startSampler records, every 50 ms, the backends PostgreSQL serves for
// the database and PgBouncer's clients per application_name.
func startSampler(t *testing.T, dbName string) *sampler {
	t.Helper()
	admin := pgbouncerAdmin(t)
	direct, err := pgx.Connect(context.Background(), testenv.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(context.Background()) })
	s := &sampler{stopc: make(chan struct{}), maxClients: map[string]int{}}
	s.done.Go(func() {
		ctx := context.Background()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := s.sample(ctx, direct, admin, dbName); err != nil && s.err == nil {
				s.err = err
			}
			select {
			case <-s.stopc:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

// sample takes one reading of both counts.
func (s *sampler) sample(ctx context.Context, direct, admin *pgx.Conn, dbName string) error {
	var n int
	if err := direct.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, dbName).Scan(&n); err != nil {
		return fmt.Errorf("count backends: %w", err)
	}
	rows, err := showRows(ctx, admin, "SHOW CLIENTS")
	if err != nil {
		return fmt.Errorf("SHOW CLIENTS: %w", err)
	}
	s.maxBackends = max(s.maxBackends, n)
	per := map[string]int{}
	for _, r := range rows {
		if r["database"] == dbName {
			per[r["application_name"]]++
		}
	}
	for k, v := range per {
		s.maxClients[k] = max(s.maxClients[k], v)
	}
	s.samples++
	return nil
}

// stop ends the sampling; an error if any sample failed or none was taken.
func (s *sampler) stop() (int, map[string]int, error) {
	close(s.stopc)
	s.done.Wait()
	if s.err == nil && s.samples == 0 {
		s.err = errors.New("no sample taken")
	}
	return s.maxBackends, s.maxClients, s.err
}

// Package drill is the failover drill: it builds its own PostgreSQL primary
// and streaming standby, PgBouncer in front of the writer, a Redis and an
// SMTP server, puts a toxiproxy path between the in-process workers and
// each dependency (the SNS/SQS endpoint behind an HTTP fault proxy too),
// runs the workers under a steady load of published orders, and mid-run
// breaks something: cleanly (promote the standby, restart PostgreSQL or
// PgBouncer, stop Redis or PostgreSQL) or as production's networks do
// (hangs, latency, resets around COMMIT or after SMTP DATA, slow replies,
// AWS errors and throttling). Per scenario it reports what was published,
// processed, lost, duplicated and dead-lettered, the breaker transitions,
// the seconds from the dependency being whole again to the first order
// committed, the p99 latency of the orders caught in the window, and what
// the scenario's own promises measured.
package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/faults"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/admin"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// Scenarios, in the order they run.
const (
	Promote          = "promote"           // stop the primary, promote the standby, repoint PgBouncer
	RestartPostgres  = "restart-postgres"  // restart the writer
	RestartPgBouncer = "restart-pgbouncer" // restart the proxy
	RedisOutage      = "redis-outage"      // stop Redis for RedisDown
	LongOutage       = "long-outage"       // stop PostgreSQL for DBDown: messages must wait in the queue

	DBBlackhole        = "db-blackhole"          // the database path forwards nothing, resets nothing
	DBLatency          = "db-latency"            // +50 ms per database round trip
	DBResetAtCommit    = "db-reset-at-commit"    // connections cut between a COMMIT and its reply
	RedisBlackhole     = "redis-blackhole"       // the Redis path forwards nothing
	SMTPResetAfterData = "smtp-reset-after-data" // the SMTP server reads DATA and closes before its verdict
	SMTPSlow           = "smtp-slow"             // 5 s per SMTP reply
	AWSErrors          = "aws-errors"            // 10 % of SQS/SNS calls fail; batch deletes fail in part
	AWSBlackhole       = "aws-blackhole"         // the SQS/SNS path forwards nothing
)

// AllScenarios is every scenario, in order.
var AllScenarios = []string{Promote, RestartPostgres, RestartPgBouncer, RedisOutage, LongOutage,
	DBBlackhole, DBLatency, DBResetAtCommit, RedisBlackhole, SMTPResetAfterData, SMTPSlow, AWSErrors, AWSBlackhole}

// RecoveryTarget is the promise: orders commit again within this of the
// database being writable again.
const RecoveryTarget = 5 * time.Second

// Config configures a drill.
type Config struct {
	Dir      string // state directory; wiped at start
	BasePort int    // primary; standby +1, PgBouncer +2, Redis +3. Defaults to 25432, below the ephemeral port range.
	// AWS reaches the SNS/SQS emulator; its BaseEndpoint (AWS_ENDPOINT_URL)
	// is required: the workers reach it through the fault proxies.
	AWS aws.Config
	// ToxiproxyURL is the toxiproxy server's API (TOXIPROXY_URL). Defaults
	// to faults.ToxiproxyURLDefault.
	ToxiproxyURL string
	Scenarios    []string      // defaults to AllScenarios
	Rate         int           // orders per second. Defaults to 40.
	Before       time.Duration // load before the fault. Defaults to 5s.
	After        time.Duration // load after recovery. Defaults to 10s.
	RedisDown    time.Duration // Defaults to 20s.
	DBDown       time.Duration // the long outage. Defaults to 45s.
	// Fault is how long each network fault lasts; zero takes each
	// scenario's own (30 s for db-blackhole, db-latency, smtp-slow and
	// aws-errors, 20 s for the others).
	Fault time.Duration
	// SMTPTimeout is the workers' SMTP_TIMEOUT. Defaults to
	// mailer.TimeoutDefault.
	SMTPTimeout time.Duration
	// EmailClaimTTL is the workers' EMAIL_CLAIM_TTL: an email whose outcome
	// is unknown comes back after it. Defaults to 30s (production's 2
	// minutes would make the SMTP scenarios wait that long to settle).
	EmailClaimTTL time.Duration
	Workers       int       // in-process workers. Defaults to 2.
	Progress      io.Writer // one line per step; nil for none
}

// Result is one scenario's outcome.
type Result struct {
	Scenario     string
	Published    int
	Processed    int
	Lost         int
	Duplicated   int
	DeadLettered int
	Transitions  string
	// Recovery is from the database being writable again to the first
	// order committed; negative when the scenario has no such moment.
	Recovery time.Duration
	// RecoveryTarget is the scenario's bound on Recovery when it is not
	// RecoveryTarget (an SQS path that hung is received from again within
	// the receive's own bound).
	RecoveryTarget time.Duration
	P99            time.Duration
	// Notes are what the scenario's own checks measured; Broken the
	// promises among them that did not hold.
	Notes  []string
	Broken []string

	soldOut            int // published orders inventory must cancel
	mails, mailRepeats int // emails the SMTP server read, and second copies among them
}

// OK reports whether the scenario kept every promise.
func (r Result) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.DeadLettered == 0 && r.Recovery <= r.recoveryTarget() && len(r.Broken) == 0
}

func (r Result) recoveryTarget() time.Duration {
	if r.RecoveryTarget > 0 {
		return r.RecoveryTarget
	}
	return RecoveryTarget
}

type drill struct {
	cfg       Config
	runID     string
	primary   *node
	standby   *node
	bouncer   *process
	bouncerIn string
	redis     *process
	ports     struct{ bouncer, redis int }
	db        *store.DB
	top       topology.Topology
	ap        topology.Applied
	pub       *events.Publisher
	sqsc      *sqs.Client
	say       func(format string, args ...any)
	metrics   []*metrics.Metrics // one per worker
	net       network            // the workers' paths to their dependencies
}

// Run runs the drill and returns a result per scenario. An error means the
// drill itself could not run; a broken promise is in the results.
func Run(ctx context.Context, cfg Config) (results []Result, err error) {
	if cfg.BasePort == 0 {
		cfg.BasePort = 25432
	}
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if len(cfg.Scenarios) == 0 {
		cfg.Scenarios = AllScenarios
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 40
	}
	cfg.Before = cmpOr(cfg.Before, 5*time.Second)
	cfg.After = cmpOr(cfg.After, 10*time.Second)
	cfg.RedisDown = cmpOr(cfg.RedisDown, 20*time.Second)
	cfg.DBDown = cmpOr(cfg.DBDown, 45*time.Second)
	cfg.SMTPTimeout = cmpOr(cfg.SMTPTimeout, mailer.TimeoutDefault)
	cfg.EmailClaimTTL = cmpOr(cfg.EmailClaimTTL, 30*time.Second)
	if cfg.ToxiproxyURL == "" {
		cfg.ToxiproxyURL = faults.ToxiproxyURLDefault
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	for _, sc := range cfg.Scenarios {
		if !slices.Contains(AllScenarios, sc) {
			return nil, fmt.Errorf("drill: unknown scenario %q (want one of %s)", sc, strings.Join(AllScenarios, ", "))
		}
	}
	d := &drill{cfg: cfg, runID: strings.ReplaceAll(uuid.NewString()[:8], "-", "")}
	d.say = func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "[drill] "+format+"\n", args...)
		}
	}
	defer d.teardown(ctx)
	if err := d.setup(ctx); err != nil {
		return nil, err
	}
	stopWorkers, err := d.startWorkers(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := stopWorkers(); serr != nil && err == nil {
			err = serr
		}
	}()
	for _, sc := range cfg.Scenarios {
		r, err := d.scenario(ctx, sc)
		if err != nil {
			return results, fmt.Errorf("drill: scenario %s: %w", sc, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// setup builds the drill's own PostgreSQL pair, PgBouncer and Redis, its
// database and its topology.
func (d *drill) setup(ctx context.Context) error {
	p := d.cfg.BasePort
	d.primary = &node{name: "primary", dir: filepath.Join(d.cfg.Dir, "pg", "primary"), port: p}
	d.standby = &node{name: "standby", dir: filepath.Join(d.cfg.Dir, "pg", "standby"), port: p + 1}
	d.ports.bouncer, d.ports.redis = p+2, p+3
	for _, port := range []int{p, p + 1, p + 2, p + 3} {
		if portOpen(ctx, port) {
			return fmt.Errorf("drill: port %d is taken (a drill still running? `make drill` cleans up after itself)", port)
		}
	}
	if err := os.RemoveAll(d.cfg.Dir); err != nil {
		return fmt.Errorf("drill: wipe the state directory: %w", err)
	}
	if err := os.MkdirAll(d.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("drill: state directory: %w", err)
	}
	if err := d.setupPostgres(ctx); err != nil {
		return err
	}
	if err := d.setupDaemons(ctx); err != nil {
		return err
	}
	if err := d.setupDatabase(ctx); err != nil {
		return err
	}
	if err := d.setupNetwork(ctx); err != nil {
		return err
	}
	d.top = topology.Default().WithPrefix("drill" + d.runID + "-")
	d.sqsc = sqs.NewFromConfig(d.cfg.AWS)
	snsc := sns.NewFromConfig(d.cfg.AWS)
	var err error
	if d.ap, err = topology.Apply(ctx, snsc, d.sqsc, d.top); err != nil {
		return err
	}
	d.pub, err = events.NewPublisher(snsc, events.PublisherConfig{TopicARN: d.ap.TopicARN})
	return err
}

// setupPostgres starts the primary and its synchronous standby and creates
// the database.
func (d *drill) setupPostgres(ctx context.Context) error {
	d.say("initialising PostgreSQL primary on :%d and streaming standby on :%d", d.primary.port, d.standby.port)
	if err := initPrimary(ctx, d.primary); err != nil {
		return err
	}
	if err := initStandby(ctx, d.primary, d.standby); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, d.primary.url("postgres"))
	if err != nil {
		return fmt.Errorf("drill: connect to primary: %w", err)
	}
	_, err = conn.Exec(ctx, `CREATE DATABASE orderpipe`)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("drill: create database: %w", err)
	}
	return nil
}

// setupDaemons starts PgBouncer in front of the primary, and Redis.
func (d *drill) setupDaemons(ctx context.Context) error {
	ini, err := pgbouncerConfig(d.cfg.Dir, d.ports.bouncer, d.primary.port, 20)
	if err != nil {
		return err
	}
	d.bouncerIn = ini
	bouncerBin := "/usr/sbin/pgbouncer"
	if _, err := os.Stat(bouncerBin); err != nil {
		bouncerBin = "pgbouncer"
	}
	d.bouncer = &process{name: "pgbouncer", args: []string{bouncerBin, ini}, log: filepath.Join(d.cfg.Dir, "pgbouncer.log")}
	d.redis = &process{name: "redis", log: filepath.Join(d.cfg.Dir, "redis.log"), args: []string{"redis-server",
		"--port", strconv.Itoa(d.ports.redis), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}}
	d.say("starting PgBouncer on :%d (transaction pooling, in front of the primary) and Redis on :%d", d.ports.bouncer, d.ports.redis)
	for _, pr := range []struct {
		p    *process
		port int
	}{{d.bouncer, d.ports.bouncer}, {d.redis, d.ports.redis}} {
		if err := pr.p.start(ctx); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := waitPort(wctx, pr.port)
		cancel()
		if err != nil {
			return fmt.Errorf("%w (log: %s)", err, pr.p.log)
		}
	}
	return nil
}

// setupDatabase migrates the database through the proxy and seeds the
// drill's products.
func (d *drill) setupDatabase(ctx context.Context) error {
	var err error
	d.db, err = store.Open(ctx, store.Config{URL: d.dbURL(), MaxConns: 4, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	if err := d.db.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}
	var products []catalog.Product
	for i, sku := range skus {
		products = append(products, catalog.Product{SKU: sku, Name: "Drill item " + string(sku), Price: catalog.Cents(500 + 100*i), Stock: 1_000_000})
	}
	products = append(products, catalog.Product{SKU: skuSoldOut, Name: "Drill item sold out", Price: 900, Stock: 0})
	return admin.Seed(ctx, d.db, products, nil)
}

var skus = []events.SKU{"DRILL-A", "DRILL-B", "DRILL-C", "DRILL-D"}

// skuSoldOut has no stock: inventory rejects its orders and emits their
// cancellation through the outbox, so the relay's path to SNS carries
// traffic in every scenario.
const skuSoldOut events.SKU = "DRILL-SOLD-OUT"

// soldOutEvery is how often an order asks for skuSoldOut.
const soldOutEvery = 20

func (d *drill) dbURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/orderpipe?sslmode=disable", d.ports.bouncer)
}

// teardown removes what setup made; it runs even when ctx was cancelled.
func (d *drill) teardown(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	d.net.close()
	if d.db != nil {
		d.db.Close()
	}
	if d.ap.TopicARN != "" {
		for _, q := range d.ap.Queues {
			_, _ = d.sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.URL)})
			_, _ = d.sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.DLQURL)})
		}
		_, _ = sns.NewFromConfig(d.cfg.AWS).DeleteTopic(ctx, &sns.DeleteTopicInput{TopicArn: aws.String(d.ap.TopicARN)})
	}
	if d.bouncer != nil {
		d.bouncer.stop(ctx, d.ports.bouncer)
	}
	if d.redis != nil {
		d.redis.stop(ctx, d.ports.redis)
	}
	for _, n := range []*node{d.primary, d.standby} {
		if n != nil && portOpen(ctx, n.port) {
			_ = n.stop(ctx, "immediate")
		}
	}
}

// startWorkers runs the workers in this process; stop stops them and
// closes their log.
func (d *drill) startWorkers(ctx context.Context) (stop func() error, err error) {
	logFile, err := os.Create(filepath.Join(d.cfg.Dir, "worker.log"))
	if err != nil {
		return nil, fmt.Errorf("drill: worker log: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(logFile, nil))
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	d.metrics = make([]*metrics.Metrics, d.cfg.Workers)
	for i := range d.cfg.Workers {
		d.metrics[i] = metrics.New()
		wg.Go(func() {
			err := app.Run(wctx, app.Config{
				Metrics:       d.metrics[i],
				AWS:           d.net.aws,
				Topology:      d.top,
				Store:         store.Config{URL: d.net.dbURL(), MaxConns: 8},
				Redis:         redisstore.Config{URL: d.net.redisURL(), KeyPrefix: "drill:"},
				SMTP:          mailer.Config{Addr: d.net.email.Addr, Timeout: d.cfg.SMTPTimeout},
				EmailClaimTTL: d.cfg.EmailClaimTTL,
				Consumer:      worker.Config{WaitTime: 2 * time.Second},
				Logger:        log.With("worker", i),
			})
			if err != nil {
				log.Error("worker failed", "err", err)
			}
		})
	}
	d.say("%d workers running (log: %s)", d.cfg.Workers, logFile.Name())
	return func() error {
		cancel()
		wg.Wait()
		if err := logFile.Close(); err != nil {
			return fmt.Errorf("drill: worker log: %w", err)
		}
		return nil
	}, nil
}

// load publishes rate orders a second until stop, tagged with the scenario.
type load struct {
	published atomic.Int64
	soldOut   atomic.Int64 // published orders that ask for skuSoldOut
	stop      chan struct{}
	done      chan struct{}
	mu        sync.Mutex
	sentAt    map[string]time.Time // order_id -> occurred_at
}

func (d *drill) startLoad(ctx context.Context, sc string) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{}), sentAt: map[string]time.Time{}}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / 10)
		defer tick.Stop()
		perTick := max(d.cfg.Rate/10, 1)
		n := 0
		for {
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			evs := make([]events.Event, perTick)
			for i := range evs {
				evs[i] = d.order(sc, n)
				n++
			}
			sent, err := d.pub.Publish(ctx, evs)
			l.published.Add(int64(sent))
			l.mu.Lock()
			for _, ev := range evs {
				l.sentAt[ev.Order.OrderID] = ev.OccurredAt
				if ev.Order.Items[0].SKU == skuSoldOut {
					l.soldOut.Add(1)
				}
			}
			l.mu.Unlock()
			if err != nil {
				d.say("publish: %v", err)
			}
		}
	}()
	return l
}

func (l *load) finish() int {
	close(l.stop)
	<-l.done
	return int(l.published.Load())
}

func (d *drill) domain(sc string) string { return sc + "." + d.runID + ".drill.example.com" }

func (d *drill) orderPrefix(sc string) string { return "drill-" + d.runID + "-" + sc + "-" }

func (d *drill) order(sc string, n int) events.Event {
	id := fmt.Sprintf("%s%d", d.orderPrefix(sc), n)
	sku := skus[rand.IntN(len(skus))]
	if n%soldOutEvery == soldOutEvery-1 {
		sku = skuSoldOut
	}
	return events.Event{
		EventID: events.EventID(uuid.NewString()), EventType: events.OrderPlaced, SchemaVersion: events.SchemaVersion,
		OccurredAt: time.Now().UTC(),
		Order: events.Order{
			OrderID:  id,
			Customer: events.Customer{ID: "cus-" + id, Email: fmt.Sprintf("c%d@%s", n, d.domain(sc)), Name: "Drill customer"},
			Currency: "USD",
			Items:    []events.Item{{SKU: sku, Quantity: 1 + rand.IntN(3)}},
		},
	}
}

func (d *drill) scenario(ctx context.Context, sc string) (Result, error) {
	r := Result{Scenario: sc, Recovery: -1}
	before := d.snapshot()
	d.say("%s: load at %d orders/s for %s before the fault", sc, d.cfg.Rate, d.cfg.Before)
	l := d.startLoad(ctx, sc)
	time.Sleep(d.cfg.Before)
	w := window{start: time.Now()}
	watch := d.watchBreakers()
	var err error
	if network := d.networkFault(sc); network != nil {
		w, err = d.timedFault(sc, w, network)
	} else {
		w.writable, err = d.fault(ctx, sc)
		w.end = time.Now()
	}
	if err != nil {
		watch.stop()
		l.finish()
		return r, err
	}
	time.Sleep(d.cfg.After)
	r.Published = l.finish()
	r.soldOut = int(l.soldOut.Load())
	opened := watch.stop()
	d.say("%s: published %d orders; waiting for the pipeline to settle", sc, r.Published)
	if err := d.settle(ctx, sc, r.Published, r.soldOut); err != nil {
		d.say("%s: %v", sc, err)
	}
	after := d.snapshot()
	risks := int(after.risks["outcome_unknown"] - before.risks["outcome_unknown"] + after.risks["unrecorded"] - before.risks["unrecorded"])
	if err := d.measure(ctx, sc, &r, l.sentAt, w, risks); err != nil {
		return r, err
	}
	r.Transitions = diffTransitions(before.transitions, after.transitions)
	if err := d.check(ctx, sc, &r, w, before, after, opened); err != nil {
		return r, err
	}
	return r, nil
}

// window is when a scenario's fault began and ended, and when the
// database was writable again (zero when the scenario has no such moment).
type window struct {
	start, end, writable time.Time
}

// fault breaks something and returns when the database was writable again
// through the proxy (zero when the scenario does not touch the database).
func (d *drill) fault(ctx context.Context, sc string) (time.Time, error) {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch sc {
	case Promote:
		return d.promote(ctx, wctx)
	case RestartPostgres:
		d.say("%s: restarting PostgreSQL (fast shutdown)", sc)
		if err := d.primary.stop(ctx, "fast"); err != nil {
			return time.Time{}, err
		}
		if err := d.primary.start(ctx); err != nil {
			return time.Time{}, err
		}
		return d.primary.writable(wctx)
	case RestartPgBouncer:
		d.say("%s: restarting PgBouncer", sc)
		d.bouncer.stop(ctx, d.ports.bouncer)
		if err := d.bouncer.start(ctx); err != nil {
			return time.Time{}, err
		}
		if err := waitPort(wctx, d.ports.bouncer); err != nil {
			return time.Time{}, err
		}
		return time.Now(), nil
	case LongOutage:
		return d.longOutage(ctx, wctx)
	case RedisOutage:
		d.say("%s: stopping Redis for %s", sc, d.cfg.RedisDown)
		d.redis.stop(ctx, d.ports.redis)
		time.Sleep(d.cfg.RedisDown)
		if err := d.redis.start(ctx); err != nil {
			return time.Time{}, err
		}
		return time.Time{}, waitPort(wctx, d.ports.redis)
	}
	return time.Time{}, fmt.Errorf("unknown scenario %q (want one of %s)", sc, strings.Join(AllScenarios, ", "))
}

// promote crashes the primary, promotes the standby and repoints PgBouncer
// at it, as RDS Proxy follows an Aurora failover. wctx bounds the wait for
// the new writer.
func (d *drill) promote(ctx, wctx context.Context) (time.Time, error) {
	if d.standby == nil {
		return time.Time{}, errors.New("no standby left to promote (promote runs once, first)")
	}
	d.say("%s: stopping the primary (immediate) and promoting the standby", Promote)
	if err := d.primary.stop(ctx, "immediate"); err != nil {
		return time.Time{}, err
	}
	if err := d.standby.promote(ctx); err != nil {
		return time.Time{}, err
	}
	writable, err := d.standby.writable(wctx)
	if err != nil {
		return time.Time{}, err
	}
	if _, err := pgbouncerConfig(d.cfg.Dir, d.ports.bouncer, d.standby.port, 20); err != nil {
		return time.Time{}, err
	}
	if err := d.bouncer.signal(syscall.SIGHUP); err != nil {
		return time.Time{}, err
	}
	d.primary, d.standby = d.standby, nil
	d.say("%s: standby promoted and writable; PgBouncer repointed", Promote)
	return writable, nil
}

// longOutage stops PostgreSQL for DBDown, saying halfway through where the
// backlog waits. wctx bounds the wait for the restarted writer.
func (d *drill) longOutage(ctx, wctx context.Context) (time.Time, error) {
	d.say("%s: stopping PostgreSQL for %s", LongOutage, d.cfg.DBDown)
	if err := d.primary.stop(ctx, "immediate"); err != nil {
		return time.Time{}, err
	}
	// While the breaker is open nothing is received: the backlog waits
	// in the queues, where SQS does not count it towards maxReceiveCount.
	time.Sleep(d.cfg.DBDown / 2)
	waiting, _ := d.depth(ctx, false)
	dead, _ := d.depth(ctx, true)
	d.say("%s: halfway through the outage: %d messages waiting in the queues, %d in the DLQs", LongOutage, waiting, dead)
	time.Sleep(d.cfg.DBDown - d.cfg.DBDown/2)
	if err := d.primary.start(ctx); err != nil {
		return time.Time{}, err
	}
	return d.primary.writable(wctx)
}

// settle waits until every published order went through the three
// handlers, every sold-out order's cancellation did too, the outbox is
// empty and so are the queues; or until two minutes and an email claim's
// lease pass.
func (d *drill) settle(ctx context.Context, sc string, published, soldOut int) error {
	limit := 2*time.Minute + d.cfg.EmailClaimTTL
	deadline := time.Now().Add(limit)
	for {
		placed, cancelled, err := d.processed(ctx, sc)
		if err == nil && placed >= published && cancelled >= soldOut {
			pending, err := d.depth(ctx, false)
			unsent, oerr := d.outboxPending(ctx)
			if err == nil && oerr == nil && pending == 0 && unsent == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not settled after %s: %d of %d orders and %d of %d cancellations processed", limit, placed, published, cancelled, soldOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// processed counts the scenario's orders that all three handlers recorded,
// and the cancellations (of sold-out orders) they all recorded.
func (d *drill) processed(ctx context.Context, sc string) (placed, cancelled int, err error) {
	err = d.db.Pool().QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE placed = 3), count(*) FILTER (WHERE cancelled = 3) FROM (
			SELECT count(DISTINCT handler) FILTER (WHERE event_type = 'order.placed') AS placed,
			       count(DISTINCT handler) FILTER (WHERE event_type = 'order.cancelled') AS cancelled
			FROM processed_events WHERE order_id LIKE $1 GROUP BY order_id) o`, d.orderPrefix(sc)+"%").Scan(&placed, &cancelled)
	if err != nil {
		return 0, 0, fmt.Errorf("count processed orders: %w", err)
	}
	return placed, cancelled, nil
}

// outboxPending counts the outbox events not yet published.
func (d *drill) outboxPending(ctx context.Context) (int, error) {
	var n int
	if err := d.db.Pool().QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count unsent outbox events: %w", err)
	}
	return n, nil
}

// depth sums the messages in the three queues (or their DLQs).
func (d *drill) depth(ctx context.Context, dlq bool) (int, error) {
	total := 0
	for _, q := range d.ap.Queues {
		u := q.URL
		if dlq {
			u = q.DLQURL
		}
		n, err := topology.Depth(ctx, d.sqsc, u)
		if err != nil {
			return 0, err
		}
		total += int(n)
	}
	return total, nil
}

// measure counts what the scenario lost, duplicated and dead-lettered,
// its recovery and its p99. Email copies beyond one per event count as
// duplicates only beyond the risks the workers counted (risks).
func (d *drill) measure(ctx context.Context, sc string, r *Result, sentAt map[string]time.Time, w window, risks int) error {
	like := d.orderPrefix(sc) + "%"
	placed, cancelled, err := d.processed(ctx, sc)
	if err != nil {
		return err
	}
	r.Processed = placed
	r.Lost = max(r.Published-placed, 0) + max(r.soldOut-cancelled, 0)
	var extraMoves, extraInvoices int
	if err := d.db.Pool().QueryRow(ctx, `
		SELECT (SELECT count(*) - count(DISTINCT (order_id, kind)) FROM stock_movements WHERE order_id LIKE $1),
		       (SELECT count(*) - count(DISTINCT order_id) FROM invoices WHERE order_id LIKE $1)`, like).
		Scan(&extraMoves, &extraInvoices); err != nil {
		return fmt.Errorf("count duplicates: %w", err)
	}
	r.mails, r.mailRepeats = d.net.smtp.Copies(d.domain(sc))
	r.Duplicated = extraMoves + extraInvoices + max(r.mailRepeats-risks, 0)
	if r.DeadLettered, err = d.depth(ctx, true); err != nil {
		return err
	}
	if r.DeadLettered > 0 {
		d.sayDeadLetters(ctx)
	}
	if !w.writable.IsZero() {
		var first *time.Time
		if err := d.db.Pool().QueryRow(ctx, `SELECT min(processed_at) FROM processed_events WHERE handler = 'billing' AND processed_at >= $1`,
			w.writable).Scan(&first); err != nil {
			return fmt.Errorf("first order after recovery: %w", err)
		}
		if first == nil {
			r.Recovery = time.Hour // nothing committed since: a broken promise
		} else {
			r.Recovery = first.Sub(w.writable)
		}
	}
	// p99 end-to-end latency of the orders published from 2s before the
	// fault to 10s after the dependency was whole again.
	end := w.end
	if !w.writable.IsZero() {
		end = w.writable
	}
	lat, err := d.latencies(ctx, like, sentAt, w.start.Add(-2*time.Second), end.Add(10*time.Second))
	if err != nil {
		return err
	}
	r.P99 = percentile(lat, 0.99)
	return nil
}

// latencies returns, for each order published in [from, to], the time from
// its occurred_at to the last of its three handlers' commits.
func (d *drill) latencies(ctx context.Context, like string, sentAt map[string]time.Time, from, to time.Time) ([]time.Duration, error) {
	rows, err := d.db.Pool().Query(ctx, `
		SELECT order_id, max(processed_at) FROM processed_events WHERE order_id LIKE $1
		GROUP BY order_id HAVING count(DISTINCT handler) = 3`, like)
	if err != nil {
		return nil, fmt.Errorf("latencies: %w", err)
	}
	var (
		lat   []time.Duration
		order string
		done  time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&order, &done}, func() error {
		if at, ok := sentAt[order]; ok && !at.Before(from) && !at.After(to) {
			lat = append(lat, done.Sub(at))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("latencies: %w", err)
	}
	return lat, nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(int(float64(len(ds))*p), len(ds)-1)]
}

// transitions sums the breakers' transitions over the workers.
func (d *drill) transitions() map[string]float64 {
	out := map[string]float64{}
	for _, m := range d.metrics {
		for _, b := range breakers {
			for _, to := range []string{"open", "half-open", "closed"} {
				out[b+" "+to] += testutil.ToFloat64(m.BreakerTransitions.WithLabelValues(b, to))
			}
		}
	}
	return out
}

func diffTransitions(before, after map[string]float64) string {
	var parts []string
	for _, b := range breakers {
		var s []string
		for _, to := range []string{"open", "half-open", "closed"} {
			if n := after[b+" "+to] - before[b+" "+to]; n > 0 {
				s = append(s, fmt.Sprintf("%s %.0f", to, n))
			}
		}
		if len(s) > 0 {
			parts = append(parts, b+": "+strings.Join(s, ", "))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// sayDeadLetters prints why messages were dead-lettered (a peek: they stay
// invisible for a few seconds, then return to the DLQ).
func (d *drill) sayDeadLetters(ctx context.Context) {
	for _, q := range d.ap.Queues {
		out, err := d.sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(q.DLQURL), MaxNumberOfMessages: 10, VisibilityTimeout: 1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			continue
		}
		for _, m := range out.Messages {
			reason, detail := "exceeded maxReceiveCount", ""
			if v, ok := m.MessageAttributes[worker.AttrDLQReason]; ok {
				reason = aws.ToString(v.StringValue)
			}
			if v, ok := m.MessageAttributes[worker.AttrDLQError]; ok {
				detail = aws.ToString(v.StringValue)
			}
			d.say("dead letter in %s: %s %s", q.Handler, reason, detail)
		}
	}
}

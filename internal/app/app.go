// Package app wires the worker: AWS clients, the pool, Redis, SMTP, the three
// handlers and one consumer per queue. cmd/worker and the integration tests
// both run it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"golang.org/x/sync/errgroup"

	"github.com/orderpipe/orderpipe/handlers"
	"github.com/orderpipe/orderpipe/handlers/billing"
	"github.com/orderpipe/orderpipe/handlers/inventory"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// Config is everything the worker needs; cmd/worker fills it from the environment.
type Config struct {
	AWS          aws.Config
	Topology     topology.Topology
	Handlers     []string // which handlers this process runs; defaults to all
	Store        store.Config
	RedisURL     string
	IdemTTL      time.Duration
	SMTP         mailer.Config
	Notification notification.Config
	// Consumer is the template for every queue's consumer: Name, QueueURL,
	// DLQURL and VisibilityTimeout are filled per queue.
	Consumer worker.Config
	Logger   *slog.Logger
}

// AWSConfig loads the default AWS configuration (environment, shared files,
// ECS task role). With an endpoint (an emulator) and no credentials in the
// environment, it uses static dummy credentials, which emulators accept.
func AWSConfig(ctx context.Context, region, endpoint string, haveKeys bool) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}
	if endpoint != "" && !haveKeys {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS config: %w", err)
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	return cfg, nil
}

// Run runs the worker until ctx is cancelled, then drains and returns.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Handlers) == 0 {
		cfg.Handlers = cfg.Topology.Handlers()
	}
	sqsc := sqs.NewFromConfig(cfg.AWS)
	ap, err := topology.Resolve(ctx, sns.NewFromConfig(cfg.AWS), sqsc, cfg.Topology)
	if err != nil {
		return fmt.Errorf("find queues: %w", err)
	}
	db, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer db.Close()
	rdb, err := store.OpenRedis(cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	mail, err := mailer.New(cfg.SMTP)
	if err != nil {
		return err
	}
	keys := store.NewKeys(rdb, cfg.IdemTTL)
	funcs := map[string]handlers.EventFunc{
		billing.Name:      billing.New(db).Handle,
		inventory.Name:    inventory.New(db).Handle,
		notification.Name: notification.New(db, mail, cfg.Notification).Handle,
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, name := range cfg.Handlers {
		fn, ok := funcs[name]
		if !ok {
			return fmt.Errorf("unknown handler %q (want billing, inventory or notification)", name)
		}
		q, ok := ap.Queues[name]
		if !ok {
			return fmt.Errorf("topology has no queue for handler %q", name)
		}
		c, err := newConsumer(sqsc, cfg.Consumer, q, handlers.Decode(handlers.Idempotent(keys, name, log, fn)), log)
		if err != nil {
			return err
		}
		g.Go(func() error { return c.Run(gctx) })
	}
	log.Info("worker started", "handlers", cfg.Handlers, "topic", ap.TopicARN)
	err = g.Wait()
	log.Info("worker stopped")
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func newConsumer(client *sqs.Client, tmpl worker.Config, q topology.AppliedQueue, h worker.Handler, log *slog.Logger) (*worker.Consumer, error) {
	c := tmpl
	c.Name, c.QueueURL, c.DLQURL = q.Handler, q.URL, q.DLQURL
	c.VisibilityTimeout = time.Duration(q.VisibilityTimeoutSeconds) * time.Second
	c.Logger = log
	return worker.New(client, h, c)
}

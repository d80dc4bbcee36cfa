package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/orderpipe/orderpipe/internal/drill"
)

// drillCmd runs the failover drill against its own PostgreSQL pair,
// PgBouncer and Redis, with the local stack's emulator and Mailpit.
func drillCmd(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("drill")
	scenarios := fs.String("scenarios", strings.Join(drill.AllScenarios, ","), "comma-separated scenarios to run, in order")
	rate := fs.Int("rate", 40, "orders published per second")
	before := fs.Duration("before", 0, "load before each fault (default 5s)")
	after := fs.Duration("after", 0, "load after each recovery (default 10s)")
	redisDown := fs.Duration("redis-down", 0, "how long Redis stays down (default 20s)")
	dbDown := fs.Duration("db-down", 0, "how long PostgreSQL stays down in long-outage (default 45s)")
	dir := fs.String("dir", ".stack/drill", "state directory (wiped at start)")
	basePort := fs.Int("base-port", 25432, "primary port; standby, PgBouncer and Redis take the next three")
	mailpit := fs.String("mailpit-url", envOr("MAILPIT_URL", "http://127.0.0.1:8025"), "Mailpit API, to count emails")
	smtpAddr := fs.String("smtp-addr", envOr("SMTP_ADDR", "127.0.0.1:1025"), "SMTP server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	awsCfg, err := c.Common.AWS(ctx)
	if err != nil {
		return err
	}
	results, err := drill.Run(ctx, drill.Config{
		Dir: *dir, BasePort: *basePort, AWS: awsCfg, SMTPAddr: *smtpAddr, MailpitURL: *mailpit,
		Scenarios: strings.Split(*scenarios, ","), Rate: *rate, Before: *before, After: *after, RedisDown: *redisDown, DBDown: *dbDown,
		Progress: os.Stderr,
	})
	if len(results) > 0 {
		fmt.Fprint(c.Out, drill.Table(results))
	}
	if err != nil {
		return err
	}
	for _, r := range results {
		if !r.OK() {
			return errors.New("a scenario lost, duplicated or dead-lettered orders, or recovered slower than " + drill.RecoveryTarget.String())
		}
	}
	fmt.Fprintf(c.Out, "drill OK: nothing lost, duplicated or dead-lettered; recovery within %s\n", drill.RecoveryTarget)
	return nil
}

// envOr is the variable name, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/orderpipe/orderpipe/internal/drill"
	"github.com/orderpipe/orderpipe/internal/faults"
)

// drillCmd runs the failover drill against its own PostgreSQL pair,
// PgBouncer, Redis and SMTP server, with the local stack's emulator and
// toxiproxy.
func drillCmd(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("drill")
	scenarios := fs.String("scenarios", strings.Join(drill.AllScenarios, ","), "comma-separated scenarios to run, in order")
	rate := fs.Int("rate", 40, "orders published per second")
	before := fs.Duration("before", 0, "load before each fault (default 5s)")
	after := fs.Duration("after", 0, "load after each recovery (default 10s)")
	redisDown := fs.Duration("redis-down", 0, "how long Redis stays down (default 20s)")
	dbDown := fs.Duration("db-down", 0, "how long PostgreSQL stays down in long-outage (default 45s)")
	fault := fs.Duration("fault", 0, "how long each network fault lasts (default: the scenario's own, 20s or 30s)")
	dir := fs.String("dir", ".stack/drill", "state directory (wiped at start)")
	basePort := fs.Int("base-port", 25432, "primary port; standby, PgBouncer and Redis take the next three")
	toxiproxy := fs.String("toxiproxy-url", envOr("TOXIPROXY_URL", faults.ToxiproxyURLDefault), "toxiproxy's API")
	if err := fs.Parse(args); err != nil {
		return err
	}
	awsCfg, err := c.Common.AWS(ctx)
	if err != nil {
		return err
	}
	results, err := drill.Run(ctx, drill.Config{
		Dir: *dir, BasePort: *basePort, AWS: awsCfg, ToxiproxyURL: *toxiproxy,
		Scenarios: strings.Split(*scenarios, ","), Rate: *rate, Before: *before, After: *after, RedisDown: *redisDown, DBDown: *dbDown,
		Fault: *fault, Progress: os.Stderr,
	})
	if len(results) > 0 {
		fmt.Fprint(c.Out, drill.Table(results))
	}
	if err != nil {
		return err
	}
	for _, r := range results {
		if !r.OK() {
			return errors.New("a scenario lost, duplicated or dead-lettered orders, recovered slower than its target, or broke a promise of its own (in bold)")
		}
	}
	fmt.Fprintf(c.Out, "drill OK: nothing lost, duplicated or dead-lettered; every recovery within its target; every scenario's own promises held\n")
	return nil
}

// envOr is the variable name, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

package drill

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/orderpipe/orderpipe/internal/faults"
)

// network is what stands between the in-process workers and their
// dependencies. Every path goes through toxiproxy, where the TCP faults
// (hangs, latency, resets) are staged; behind it, the protocol faults
// toxiproxy cannot see:
//
//	database  worker → toxiproxy → commit cutter → PgBouncer → PostgreSQL
//	Redis     worker → toxiproxy → Redis
//	SQS/SNS   worker → toxiproxy → HTTP fault proxy → emulator
//	SMTP      worker → toxiproxy → the drill's SMTP server
//
// The load (the shop publishing) and the drill's own measurements go
// straight to the services: only the workers meet the faults.
type network struct {
	toxi                  *faults.Toxiproxy
	db, redis, sqs, email *faults.Path
	cutter                *faults.CommitCutter
	awsProxy              *faults.AWSProxy
	smtp                  *faults.SMTPServer
	// aws is the workers' AWS configuration: the drill's, pointed at the
	// SQS/SNS path.
	aws aws.Config
}

// setupNetwork starts the fault servers and opens the toxiproxy paths.
func (d *drill) setupNetwork(ctx context.Context) error {
	endpoint := aws.ToString(d.cfg.AWS.BaseEndpoint)
	if endpoint == "" {
		return errors.New("drill: the AWS configuration names no endpoint (AWS_ENDPOINT_URL): the drill runs against the local emulator")
	}
	n := &d.net
	var err error
	if n.toxi, err = faults.NewToxiproxy(ctx, d.cfg.ToxiproxyURL); err != nil {
		return err
	}
	if n.cutter, err = faults.NewCommitCutter(ctx, fmt.Sprintf("127.0.0.1:%d", d.ports.bouncer)); err != nil {
		return err
	}
	if n.awsProxy, err = faults.NewAWSProxy(ctx, endpoint); err != nil {
		return err
	}
	if n.smtp, err = faults.NewSMTPServer(ctx); err != nil {
		return err
	}
	awsHost, err := hostPort(n.awsProxy.URL)
	if err != nil {
		return err
	}
	for _, p := range []struct {
		path     **faults.Path
		name     string
		upstream string
	}{
		{&n.db, "db", n.cutter.Addr},
		{&n.redis, "redis", fmt.Sprintf("127.0.0.1:%d", d.ports.redis)},
		{&n.sqs, "aws", awsHost},
		{&n.email, "smtp", n.smtp.Addr},
	} {
		if *p.path, err = n.toxi.Path("drill"+d.runID+"-"+p.name, p.upstream); err != nil {
			return err
		}
	}
	n.aws = d.cfg.AWS.Copy()
	n.aws.BaseEndpoint = aws.String("http://" + n.sqs.Addr)
	d.say("toxiproxy paths: database :%s, Redis :%s, SQS/SNS :%s, SMTP :%s", port(n.db.Addr), port(n.redis.Addr), port(n.sqs.Addr), port(n.email.Addr))
	return nil
}

func hostPort(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("drill: %w", err)
	}
	return u.Host, nil
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// dbURL is the workers' database: through the database path.
func (n *network) dbURL() string {
	return "postgres://postgres@" + n.db.Addr + "/orderpipe?sslmode=disable"
}

// redisURL is the workers' Redis: through the Redis path.
func (n *network) redisURL() string { return "redis://" + n.redis.Addr + "/0" }

// heal lifts every fault of every path.
func (n *network) heal() error {
	var errs []error
	for _, p := range n.paths() {
		errs = append(errs, p.Heal())
	}
	if n.cutter != nil {
		n.cutter.SetRate(0)
	}
	if n.awsProxy != nil {
		n.awsProxy.Clear()
	}
	if n.smtp != nil {
		n.smtp.SetMode(faults.SMTPAccept)
	}
	return errors.Join(errs...)
}

func (n *network) paths() []*faults.Path {
	var ps []*faults.Path
	for _, p := range []*faults.Path{n.db, n.redis, n.sqs, n.email} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// close deletes the paths and stops the fault servers.
func (n *network) close() {
	for _, p := range n.paths() {
		_ = p.Close()
	}
	if n.cutter != nil {
		_ = n.cutter.Close()
	}
	if n.awsProxy != nil {
		_ = n.awsProxy.Close()
	}
	if n.smtp != nil {
		n.smtp.Close()
	}
}

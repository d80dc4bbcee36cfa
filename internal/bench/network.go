package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/internal/faults"
)

// Network profiles: what lies between the worker (or the ceiling's and the
// naive consumer's handlers) and its dependencies.
const (
	// NetworkLoopback is the local stack as it is: every call a loopback
	// round trip (an SQS call costs the emulator's 0.3 ms).
	NetworkLoopback = "loopback"
	// NetworkCloud puts a toxiproxy path with the latency of one AWS region
	// in front of every dependency (CloudProfile).
	NetworkCloud = "cloud"
)

// Networks lists the profiles.
var Networks = []string{NetworkLoopback, NetworkCloud}

// Delay is a latency toxic on one direction of a path: d give or take
// jitter, in the whole milliseconds toxiproxy counts.
type Delay struct {
	Direction string        `json:"direction"`
	Latency   time.Duration `json:"latency_ns"`
	Jitter    time.Duration `json:"jitter_ns"`
}

// LinkProfile is one dependency's path under a profile.
type LinkProfile struct {
	Name string `json:"name"`
	// RoundTrip is the mean added to each round trip (each request and its
	// answer), for the table.
	RoundTrip time.Duration `json:"round_trip_ns"`
	Delays    []Delay       `json:"delays"`
}

// CloudProfile is one AWS region, as the issue puts it: 10 ms per SQS or
// SNS call, a 1 ms database round trip (ECS to RDS Proxy to Aurora), 0.5 ms
// per Redis round trip (ElastiCache), 20 ms per SMTP reply (SES). toxiproxy
// counts whole milliseconds: latency 1 ms with 1 ms of jitter delays each
// answer by 0 or 1 ms, 0.5 ms on average, so the database's 1 ms is that on
// both directions, and Redis's 0.5 ms that on its answers.
var CloudProfile = []LinkProfile{
	{Name: "sqs", RoundTrip: 10 * time.Millisecond, Delays: []Delay{{faults.Downstream, 10 * time.Millisecond, time.Millisecond}}},
	{Name: "db", RoundTrip: time.Millisecond, Delays: []Delay{
		{faults.Upstream, time.Millisecond, time.Millisecond}, {faults.Downstream, time.Millisecond, time.Millisecond},
	}},
	{Name: "redis", RoundTrip: 500 * time.Microsecond, Delays: []Delay{{faults.Downstream, time.Millisecond, time.Millisecond}}},
	{Name: "smtp", RoundTrip: 20 * time.Millisecond, Delays: []Delay{{faults.Downstream, 20 * time.Millisecond, 2 * time.Millisecond}}},
}

// Net is where the code under test finds its dependencies under a profile:
// straight on the services (loopback) or through toxiproxy (cloud). The
// load generator and the measurements always go straight.
type Net struct {
	Name     string
	Links    []LinkProfile
	DBURL    string // the benchmark database through the proxy (PgBouncer)
	RedisURL string
	SMTPAddr string
	AWS      aws.Config
	SQS      *sqs.Client
	paths    []*faults.Path
}

// Describe is the profile in a line, for the table.
func (n *Net) Describe() string {
	if len(n.Links) == 0 {
		return n.Name + ": every call a loopback round trip, straight to the local stack"
	}
	parts := make([]string, len(n.Links))
	for i, l := range n.Links {
		parts[i] = fmt.Sprintf("%s +%s", l.Name, l.RoundTrip)
	}
	return n.Name + ": toxiproxy in front of every dependency, per round trip " + strings.Join(parts, ", ") + " (with jitter)"
}

// OpenNet sets up profile name on s: for cloud, a toxiproxy path with the
// profile's latency in front of PgBouncer, Redis, the SQS/SNS endpoint and
// the SMTP server.
func OpenNet(ctx context.Context, s *Stack, name, toxiproxyURL string) (*Net, error) {
	n := &Net{Name: name, DBURL: s.ProxyURL, RedisURL: s.Cfg.RedisURL, SMTPAddr: s.Cfg.SMTPAddr, AWS: s.Cfg.AWS, SQS: s.SQS}
	switch name {
	case NetworkLoopback:
		return n, nil
	case NetworkCloud:
	default:
		return nil, fmt.Errorf("bench: unknown network %q (want %s)", name, strings.Join(Networks, " or "))
	}
	n.Links = CloudProfile
	toxi, err := faults.NewToxiproxy(ctx, toxiproxyURL)
	if err != nil {
		return nil, err
	}
	upstreams, err := n.upstreams()
	if err != nil {
		return nil, err
	}
	addrs := map[string]string{}
	for _, l := range n.Links {
		p, err := toxi.Path("bench-"+name+"-"+l.Name, upstreams[l.Name])
		if err != nil {
			n.Close()
			return nil, err
		}
		n.paths = append(n.paths, p)
		for _, dl := range l.Delays {
			if err := p.Latency(dl.Direction, dl.Latency, dl.Jitter); err != nil {
				n.Close()
				return nil, err
			}
		}
		addrs[l.Name] = p.Addr
	}
	if n.DBURL, err = withHost(n.DBURL, addrs["db"]); err != nil {
		n.Close()
		return nil, err
	}
	if n.RedisURL, err = withHost(n.RedisURL, addrs["redis"]); err != nil {
		n.Close()
		return nil, err
	}
	n.SMTPAddr = addrs["smtp"]
	n.AWS = s.Cfg.AWS.Copy()
	n.AWS.BaseEndpoint = aws.String("http://" + addrs["sqs"])
	n.SQS = sqs.NewFromConfig(n.AWS)
	return n, nil
}

// upstreams are the services' host:port, by link.
func (n *Net) upstreams() (map[string]string, error) {
	endpoint := aws.ToString(n.AWS.BaseEndpoint)
	if endpoint == "" {
		return nil, errors.New("bench: the cloud profile needs AWS_ENDPOINT_URL (the local emulator)")
	}
	out := map[string]string{"smtp": n.SMTPAddr}
	for name, raw := range map[string]string{"sqs": endpoint, "db": n.DBURL, "redis": n.RedisURL} {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("bench: the %s address is not a URL with a host", name)
		}
		out[name] = u.Host
	}
	return out, nil
}

// withHost returns rawURL with its host:port replaced.
func withHost(rawURL, host string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("bench: not a URL")
	}
	u.Host = host
	return u.String(), nil
}

// Close deletes the profile's paths.
func (n *Net) Close() {
	for _, p := range n.paths {
		_ = p.Close()
	}
	n.paths = nil
}

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

// ToxiproxyURLDefault is where scripts/stack.sh serves toxiproxy's API
// (TOXIPROXY_URL).
const ToxiproxyURLDefault = "http://127.0.0.1:8474"

// Toxiproxy is a toxiproxy server's API. Each Path it opens is a listener
// of the server that forwards to one dependency; faults are toxics added to
// and removed from a path while traffic flows, and apply to the connections
// already open as well as to new ones.
type Toxiproxy struct {
	url    string
	client *toxiproxy.Client
}

// NewToxiproxy connects to the server at url and checks that it answers.
func NewToxiproxy(ctx context.Context, url string) (*Toxiproxy, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/version", nil)
	if err != nil {
		return nil, fmt.Errorf("faults: toxiproxy URL %q: %w", url, err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("faults: toxiproxy at %s does not answer (`make up` starts it): %w", url, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("faults: toxiproxy at %s answered %s", url, resp.Status)
	}
	return &Toxiproxy{url: url, client: toxiproxy.NewClient(url)}, nil
}

// Path is one proxied path to a dependency.
type Path struct {
	// Name is the proxy's name on the server.
	Name string
	// Addr is where clients connect instead of the dependency (host:port).
	Addr  string
	proxy *toxiproxy.Proxy
}

// Path opens a proxy named name to upstream (host:port) on a free port of
// 127.0.0.1, replacing one of the same name a crashed run left behind.
func (t *Toxiproxy) Path(name, upstream string) (*Path, error) {
	if old, err := t.client.Proxy(name); err == nil {
		_ = old.Delete() // a leftover of a run that did not clean up
	}
	p, err := t.client.CreateProxy(name, "127.0.0.1:0", upstream)
	if err != nil {
		return nil, fmt.Errorf("faults: toxiproxy path %s to %s: %w", name, upstream, err)
	}
	return &Path{Name: name, Addr: p.Listen, proxy: p}, nil
}

// Directions of a toxic: what the dependency sends (its answers) or what
// the client sends.
const (
	Downstream = "downstream"
	Upstream   = "upstream"
)

// Toxic names, one per kind, so a fault can be lifted by itself.
const (
	toxicLatency   = "latency"
	toxicBlackhole = "blackhole"
	toxicReset     = "reset"
	toxicSlowClose = "slow-close"
	toxicBandwidth = "bandwidth"
)

// Latency delays every chunk sent in direction by d, give or take jitter
// (uniform in [d-jitter, d+jitter)), in whole milliseconds as toxiproxy
// counts them: latency 1 ms with jitter 1 ms delays by 0 or 1 ms, 0.5 ms
// on average. Downstream, it adds d to every round trip.
func (p *Path) Latency(direction string, d, jitter time.Duration) error {
	return p.add(toxicLatency+"-"+direction, "latency", direction, toxiproxy.Attributes{
		"latency": d.Milliseconds(), "jitter": jitter.Milliseconds(),
	})
}

// Blackhole makes the path accept connections and forward nothing, either
// way, and close nothing: what a NAT that lost its mapping, or a proxy
// queueing requests through a failover, looks like to a client. The bytes
// sent meanwhile are lost, so a connection used during the black hole is
// broken for good; the client must notice by its own timeouts. A client
// that closes its side is passed on.
func (p *Path) Blackhole() error {
	for _, dir := range []string{Upstream, Downstream} {
		if err := p.add(toxicBlackhole+"-"+dir, "timeout", dir, toxiproxy.Attributes{"timeout": 0}); err != nil {
			return err
		}
	}
	return nil
}

// ResetPeer resets (TCP RST) every connection that sends in direction,
// after it.
func (p *Path) ResetPeer(direction string, after time.Duration) error {
	return p.add(toxicReset+"-"+direction, "reset_peer", direction, toxiproxy.Attributes{"timeout": after.Milliseconds()})
}

// SlowClose delays the close of every connection by d.
func (p *Path) SlowClose(d time.Duration) error {
	return p.add(toxicSlowClose, "slow_close", Downstream, toxiproxy.Attributes{"delay": d.Milliseconds()})
}

// Bandwidth limits what the dependency sends to kbps kilobytes a second.
func (p *Path) Bandwidth(kbps int64) error {
	return p.add(toxicBandwidth, "bandwidth", Downstream, toxiproxy.Attributes{"rate": kbps})
}

func (p *Path) add(name, kind, direction string, attrs toxiproxy.Attributes) error {
	if _, err := p.proxy.AddToxic(name, kind, direction, 1, attrs); err != nil {
		return fmt.Errorf("faults: add %s to %s: %w", name, p.Name, err)
	}
	return nil
}

// Heal removes every toxic: new connections and the ones that survived
// pass traffic untouched again.
func (p *Path) Heal() error {
	toxics, err := p.proxy.Toxics()
	if err != nil {
		return fmt.Errorf("faults: list the toxics of %s: %w", p.Name, err)
	}
	var errs []error
	for _, t := range toxics {
		if err := p.proxy.RemoveToxic(t.Name); err != nil {
			errs = append(errs, fmt.Errorf("faults: remove %s from %s: %w", t.Name, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Close deletes the proxy, closing its connections.
func (p *Path) Close() error {
	if err := p.proxy.Delete(); err != nil {
		return fmt.Errorf("faults: delete %s: %w", p.Name, err)
	}
	return nil
}

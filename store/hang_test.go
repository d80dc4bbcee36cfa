package store_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/store"
)

// hangProxy forwards TCP to upstream until hang is set; from then on it
// forwards nothing either way and resets nothing: a black hole, as a NAT
// that lost its mapping or a proxy queueing through a failover looks.
type hangProxy struct {
	ln   net.Listener
	hang atomic.Bool
	wg   sync.WaitGroup
}

func startHangProxy(t *testing.T, upstream string) *hangProxy {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangProxy{ln: ln}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	var d net.Dialer
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := d.DialContext(context.Background(), "tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			p.wg.Go(func() { p.pipe(u, c) })
			p.wg.Go(func() { p.pipe(c, u) })
		}
	})
	return p
}

// pipe copies src to dst, dropping everything once the proxy hangs.
func (p *hangProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if p.hang.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestHungDatabaseIsUnavailableWithinTheQueryTimeout: once the path to the
// database hangs (no reset, no refusal), every call ends within the query
// timeout as ErrNoAnswer, classified unavailable, and a few of them open the
// database breaker: the consumers stop receiving instead of waiting out
// their handler timeout on a hung connection.
func TestHungDatabaseIsUnavailableWithinTheQueryTimeout(t *testing.T) {
	env := testenv.Open(t, "store")
	u, err := url.Parse(env.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startHangProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	db, err := store.Open(context.Background(), store.Config{URL: u.String(), MaxConns: 2,
		QueryTimeout: 300 * time.Millisecond, ConnectTimeout: 300 * time.Millisecond, Logger: testenv.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	catalog := store.NewCatalog(db)
	ctx := context.Background()
	if _, err := catalog.Products(ctx, nil); err != nil {
		t.Fatalf("before the hang: %v", err)
	}

	proxy.hang.Store(true)
	for i := range store.DBBreakerFailures {
		started := time.Now()
		_, err := catalog.Products(ctx, nil)
		took := time.Since(started)
		if err == nil {
			t.Fatalf("call %d through a hung path succeeded", i)
		}
		if took > 5*time.Second {
			t.Fatalf("call %d took %s: the hang was not bounded", i, took)
		}
		if f := resilience.Classify(err); f.Class != resilience.Unavailable {
			t.Fatalf("call %d: %v classified %s, want unavailable", i, err, f.Class)
		}
		if i == 0 && !errors.Is(err, resilience.ErrNoAnswer) {
			t.Errorf("a hung query is %v, want ErrNoAnswer", err)
		}
	}
	if db.Breaker().Closed() {
		t.Error("the database breaker is still closed after a hung database failed every call")
	}
}

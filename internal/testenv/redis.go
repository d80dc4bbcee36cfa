package testenv

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process of one test's own, on its own port,
// which the test stops and starts to stage an outage without touching the
// shared Redis. It keeps nothing on disk: a restart comes back empty, as a
// replaced cache node would.
type RedisServer struct {
	URL  string
	port int
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server (from the machine's Redis
// package) and stops it when the test ends.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is needed to stage Redis outages: %v", err)
	}
	port := FreePort(t)
	r := &RedisServer{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), port: port}
	r.Start(t)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Start starts the server (again) and waits until it answers.
func (r *RedisServer) Start(t testing.TB) {
	t.Helper()
	if r.cmd != nil {
		return
	}
	// Stop ends the server (a staged outage), not the test's context.
	r.cmd = exec.CommandContext(context.WithoutCancel(t.Context()), "redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	opt, _ := redis.ParseURL(r.URL)
	c := redis.NewClient(opt)
	defer c.Close()
	Eventually(t, 10*time.Second, func() error { return c.Ping(context.Background()).Err() })
}

// Stop kills the server, as a crash would.
func (r *RedisServer) Stop(t testing.TB) {
	t.Helper()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := listenLocal(t)
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("find a free port: %v is not a TCP address", l.Addr())
	}
	return addr.Port
}

// listenLocal listens on a free port of 127.0.0.1.
func listenLocal(t testing.TB) (net.Listener, error) {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	return l, nil
}

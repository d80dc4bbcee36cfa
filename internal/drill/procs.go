package drill

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/orderpipe/orderpipe/internal/pgproc"

	"github.com/jackc/pgx/v5"
)

// The drill's own services: a PostgreSQL primary and streaming standby, a
// PgBouncer in front of whichever is the writer (the stand-in for RDS
// Proxy, which repoints itself on an Aurora failover), and a Redis. All
// plain processes under one directory, on their own ports, so the drill
// never touches the local stack's PostgreSQL or Redis.

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, tail(out, 2000))
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// node is one PostgreSQL server.
type node struct {
	name string
	dir  string // data directory
	port int
}

func (n *node) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", n.port, db)
}

func (n *node) ctl(ctx context.Context, args ...string) error {
	bin, err := pgproc.Bin("pg_ctl")
	if err != nil {
		return err
	}
	return run(pgproc.Command(ctx, bin, append([]string{"-D", n.dir}, args...)...))
}

func (n *node) start(ctx context.Context) error {
	return n.ctl(ctx, "-w", "-t", "60", "-l", n.dir+".log", "-o", fmt.Sprintf("-p %d -k %s", n.port, n.dir), "start")
}

// stop stops the server: "immediate" is a crash, "fast" a clean restart's stop.
func (n *node) stop(ctx context.Context, mode string) error {
	return n.ctl(ctx, "-w", "-m", mode, "stop")
}

func (n *node) promote(ctx context.Context) error { return n.ctl(ctx, "-w", "-t", "60", "promote") }

// writable waits until the server accepts writes, and says when it did.
func (n *node) writable(ctx context.Context) (time.Time, error) {
	for {
		if ok, _ := n.isWriter(ctx); ok {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("drill: %s never became writable: %w", n.name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *node) isWriter(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, n.url("postgres"))
	if err != nil {
		return false, fmt.Errorf("drill: connect to %s: %w", n.name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var recovery bool
	if err := conn.QueryRow(cctx, `SELECT pg_is_in_recovery()`).Scan(&recovery); err != nil {
		return false, fmt.Errorf("drill: ask %s whether it is in recovery: %w", n.name, err)
	}
	return !recovery, nil
}

// initPrimary creates and starts a primary that allows streaming replication.
func initPrimary(ctx context.Context, n *node) error {
	bin, err := pgproc.Bin("initdb")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(n.dir), 0o755); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	if err := pgproc.Chown(filepath.Dir(n.dir)); err != nil {
		return err
	}
	if err := run(pgproc.Command(ctx, bin, "-D", n.dir, "-U", "postgres", "-A", "trust", "--no-sync")); err != nil {
		return err
	}
	conf := `
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
hot_standby = on
fsync = off
# Commits wait for the standby, so a promotion loses no committed
# transaction, as Aurora's shared storage guarantees.
synchronous_standby_names = '*'
synchronous_commit = on
max_connections = 100
`
	if err := appendFile(filepath.Join(n.dir, "postgresql.conf"), conf); err != nil {
		return err
	}
	return n.start(ctx)
}

// appendFile appends s to the file at path, which must exist.
func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	if _, err := f.WriteString(s); err != nil {
		_ = f.Close() // the write failed already
		return fmt.Errorf("drill: append to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("drill: append to %s: %w", path, err)
	}
	return nil
}

// initStandby clones primary into n as a streaming standby and starts it.
func initStandby(ctx context.Context, primary, n *node) error {
	bin, err := pgproc.Bin("pg_basebackup")
	if err != nil {
		return err
	}
	if err := run(pgproc.Command(ctx, bin, "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-D", n.dir, "-R", "-X", "stream", "--no-sync")); err != nil {
		return err
	}
	// The clone inherits synchronous_standby_names; once promoted it has no
	// standby of its own and would wait for one forever.
	if err := appendFile(filepath.Join(n.dir, "postgresql.auto.conf"), "synchronous_standby_names = ''\n"); err != nil {
		return err
	}
	return n.start(ctx)
}

// process is a daemon the drill started (PgBouncer, Redis).
type process struct {
	name string
	args []string
	cmd  *exec.Cmd
	log  string
}

// start starts the daemon; it runs until stop, whatever becomes of ctx.
func (p *process) start(ctx context.Context) error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("drill: log of %s: %w", p.name, err)
	}
	p.cmd = exec.CommandContext(context.WithoutCancel(ctx), p.args[0], p.args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		_ = f.Close() // nothing was written
		return fmt.Errorf("drill: start %s: %w", p.name, err)
	}
	// The daemon writes its log through its own descriptor; ours is closed
	// when it exits, and a failure to close it loses nothing.
	go func() { _ = p.cmd.Wait(); _ = f.Close() }()
	return nil
}

func (p *process) signal(s syscall.Signal) error {
	if p.cmd == nil || p.cmd.Process == nil {
		return errors.New("drill: " + p.name + " is not running")
	}
	if err := p.cmd.Process.Signal(s); err != nil {
		return fmt.Errorf("drill: signal %s: %w", p.name, err)
	}
	return nil
}

// stop stops the process and waits until its port is free.
func (p *process) stop(ctx context.Context, port int) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	for deadline := time.Now().Add(5 * time.Second); portOpen(ctx, port) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	p.cmd = nil
}

func portOpen(ctx context.Context, port int) bool {
	d := net.Dialer{Timeout: 100 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func waitPort(ctx context.Context, port int) error {
	for !portOpen(ctx, port) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drill: nothing listens on :%d: %w", port, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// pgbouncerConfig writes PgBouncer's configuration pointing at the writer.
// server_login_retry is 1s (not 15s): after a failover the pool must reach
// the new writer within the recovery target.
func pgbouncerConfig(dir string, port, writerPort, poolSize int) (string, error) {
	ini := filepath.Join(dir, "pgbouncer.ini")
	users := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(users, []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("drill: PgBouncer users: %w", err)
	}
	userLine := ""
	if os.Geteuid() == 0 {
		userLine = "user = postgres\n"
	}
	conf := fmt.Sprintf(`[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
server_reset_query =
server_login_retry = 1
query_wait_timeout = 30
ignore_startup_parameters = extra_float_digits
admin_users = postgres
%s`, writerPort, port, users, poolSize, userLine)
	if err := os.WriteFile(ini, []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("drill: PgBouncer configuration: %w", err)
	}
	return ini, nil
}

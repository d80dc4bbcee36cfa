package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/internal/pgproc"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/store"
)

// PostgresServer is a PostgreSQL server of one test's own (from the
// machine's PostgreSQL package, as the failover drill starts its own), on a
// free port, which the test stops, restarts, and whose passwords it
// changes, without touching the shared server. The postgres role logs in
// without a password from 127.0.0.1 (the test's admin); every other role
// must give its password (scram-sha-256), so a changed password is really
// refused (SQLSTATE 28P01), as RDS and RDS Proxy refuse it. fsync is off:
// a crash loses what the test wrote, which no test relies on.
type PostgresServer struct {
	Port int
	Dir  string
	// Log is the server's log file (refused logins are in it).
	Log string
}

// StartPostgres creates, starts and returns a private server; it is
// stopped and removed when the test ends. It takes about two seconds.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "orderpipe-pg-") //nolint:usetesting // short: the server's Unix socket lives in it (107 bytes at most)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	p := &PostgresServer{Port: FreePort(t), Dir: filepath.Join(dir, "data"), Log: filepath.Join(dir, "postgres.log")}
	t.Cleanup(func() {
		_ = p.ctl(context.Background(), "-w", "-m", "immediate", "stop")
		_ = os.RemoveAll(dir)
	})
	if err := os.Mkdir(p.Dir, 0o700); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	if err := pgproc.Chown(dir); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	initdb, err := pgproc.Bin("initdb")
	if err != nil {
		t.Fatal(err)
	}
	if err := runCmd(pgproc.Command(ctx, initdb, "-D", p.Dir, "-U", "postgres", "-A", "trust", "--no-sync")); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n" //nolint:dupword // pg_hba.conf: database all, user all
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = off\nmax_connections = 40\npassword_encryption = 'scram-sha-256'\n", p.Port, p.Dir)
	if err := os.WriteFile(filepath.Join(p.Dir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	if err := appendTo(filepath.Join(p.Dir, "postgresql.conf"), conf); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	if err := pgproc.Chown(dir); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	p.Start(t)
	return p
}

// AdminURL is the postgres role's URL of database db.
func (p *PostgresServer) AdminURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// Start starts the server (again) and waits, up to a minute, until it
// accepts connections.
func (p *PostgresServer) Start(t testing.TB) {
	t.Helper()
	if err := p.ctl(context.Background(), "-w", "-t", "60", "-l", p.Log, "start"); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
}

// Stop stops the server: mode "fast" as a clean shutdown (connections get
// admin_shutdown), "immediate" as a crash.
func (p *PostgresServer) Stop(t testing.TB, mode string) {
	t.Helper()
	if err := p.ctl(context.Background(), "-w", "-t", "60", "-m", mode, "stop"); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
}

// Exec runs statements as postgres in database db.
func (p *PostgresServer) Exec(t testing.TB, db string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.AdminURL(db))
	if err != nil {
		t.Fatalf("postgres: connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("postgres: %s: %v", s, err)
		}
	}
}

// Orderpipe creates database name, migrated as `orderctl migrate` does
// (the seed catalog included), and returns a pool on it (as postgres); the
// pool closes when the test ends.
func (p *PostgresServer) Orderpipe(t testing.TB, name string) *store.DB {
	t.Helper()
	p.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, store.Config{URL: p.AdminURL(name), Proxy: store.ProxyNone, MaxConns: 4, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(ctx, discardLogger()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

// LogLines returns the server log's lines that contain s.
func (p *PostgresServer) LogLines(t testing.TB, s string) []string {
	t.Helper()
	b, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatalf("postgres log: %v", err)
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func (p *PostgresServer) ctl(ctx context.Context, args ...string) error {
	bin, err := pgproc.Bin("pg_ctl")
	if err != nil {
		return err
	}
	return runCmd(pgproc.Command(ctx, bin, append([]string{"-D", p.Dir}, args...)...))
}

func runCmd(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

func appendTo(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if _, err := f.WriteString(s); err != nil {
		_ = f.Close() // the write failed already
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	return nil
}

package resilience

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestClassify(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("bill order: %w", &pgconn.PgError{Code: code}) }
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		name     string
		err      error
		class    Class
		reason   string
		failover bool
	}{
		{"serialization failure", pg("40001"), Transient, "serialization_failure", false},
		{"deadlock", pg("40P01"), Transient, "deadlock_detected", false},
		{"lock timeout", pg("55P03"), Transient, "lock_not_available", false},
		{"statement timeout", pg("57014"), Transient, "query_canceled", false},
		{"demoted writer", pg("25006"), Unavailable, "read_only_sql_transaction", true},
		{"admin shutdown", pg("57P01"), Unavailable, "admin_shutdown", true},
		{"crash shutdown", pg("57P02"), Unavailable, "crash_shutdown", true},
		{"starting up", pg("57P03"), Unavailable, "cannot_connect_now", false},
		{"too many connections", pg("53300"), Unavailable, "too_many_connections", false},
		{"password refused (rotated)", pg("28P01"), Unavailable, "invalid_password", false},
		{"login refused", pg("28000"), Unavailable, "invalid_password", false},
		{"connection failure", pg("08006"), Unavailable, "connection_exception", true},
		{"disk full", pg("53100"), Unavailable, "server_resources", false},
		{"unique violation", pg("23505"), Permanent, "constraint_violation", false},
		{"check violation", pg("23514"), Permanent, "constraint_violation", false},
		{"numeric out of range", pg("22003"), Permanent, "data_exception", false},
		{"undefined table (bad deploy)", pg("42P01"), Transient, "sqlstate_42P01", false},
		{"connection refused", opErr(syscall.ECONNREFUSED), Unavailable, "connection_refused", false},
		{"connection reset", opErr(syscall.ECONNRESET), Unavailable, "connection_reset", true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), Unavailable, "connection_reset", true},
		{"network timeout", &net.OpError{Op: "read", Err: timeoutError{}}, Unavailable, "network_timeout", false},
		{"context deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), Transient, "timeout", false},
		{"context canceled", context.Canceled, Transient, "canceled", false},
		{"connect timeout (a hung server or path)", connectTimeout(t), Unavailable, "connect_timeout", false},
		{"no answer within a dependency's own bound", fmt.Errorf("load: %w: %w", ErrNoAnswer, context.DeadlineExceeded), Unavailable, "no_answer", true},
		{"SMTP mailbox unavailable", &textproto.Error{Code: 550, Msg: "no such user"}, Permanent, "smtp_rejected", false},
		{"SMTP greylisting", &textproto.Error{Code: 451, Msg: "try later"}, Transient, "smtp_temporary", false},
		{"SMTP closing", &textproto.Error{Code: 421, Msg: "shutting down"}, Unavailable, "smtp_unavailable", false},
		{"SMTP bad credentials (ours, not the message's)", &textproto.Error{Code: 535, Msg: "auth failed"}, Unavailable, "smtp_auth", false},
		{"open breaker", fmt.Errorf("database: %w", ErrOpen), Transient, "unknown", false},
		{"a domain error that declares itself permanent", fmt.Errorf("bill: %w", fakePermanentError{}), Permanent, "invalid_field", false},
		{"held by another delivery", fmt.Errorf("notify: %w", &HeldError{ByOther: true, Err: errors.New("claimed")}), Wait, "held", false},
		{"held, wrapping a connection cut (an email of unknown outcome)", &HeldError{Err: fmt.Errorf("end data: %w", io.EOF)}, Wait, "held", false},
		{"anything else", errors.New("surprise"), Transient, "unknown", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Classify(tt.err)
			if f.Class != tt.class || f.Reason != tt.reason || f.Failover != tt.failover {
				t.Errorf("Classify = {%s %s failover=%v}, want {%s %s failover=%v}", f.Class, f.Reason, f.Failover, tt.class, tt.reason, tt.failover)
			}
		})
	}
}

// connectTimeout returns pgx's error for a server that accepts the TCP
// connection and never answers the handshake.
func connectTimeout(t *testing.T) error {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	cfg, err := pgconn.ParseConfig("postgres://x@" + ln.Addr().String() + "/x?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnectTimeout = 50 * time.Millisecond
	conn, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err == nil {
		_ = conn.Close(context.Background())
		t.Fatal("connected to a server that never answers")
	}
	return err
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// Package resilience decides what a failure means and what to do about it:
// error classification (permanent, transient, dependency unavailable),
// per-dependency circuit breakers (sony/gobreaker) that also hold consumers
// back while a dependency is down, and a short in-process retry for blips.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Class is what a failure means for the message that met it.
type Class int

// Classes.
const (
	// Transient: retry (in process for a blip, then through the queue).
	Transient Class = iota
	// Unavailable: the dependency is down or failing over. Transient for the
	// message; counts against the dependency's circuit breaker.
	Unavailable
	// Permanent: no retry can mend it; the message goes to the DLQ at once.
	Permanent
	// Wait: the work is held (a lease or a claim, another delivery's, or
	// this one's kept after an email whose outcome is unknown): the message
	// comes back once the hold is over. Not a failure; never retried in
	// process.
	Wait
)

func (c Class) String() string {
	return [...]string{"transient", "unavailable", "permanent", "wait"}[c]
}

// HeldError is the error of work held for Remaining more: by another delivery
// (ByOther: it usually finishes in milliseconds, so look again soon), or
// by this one's own kept claim (come back exactly then).
type HeldError struct {
	Remaining time.Duration
	ByOther   bool
	Err       error
}

func (h *HeldError) Error() string {
	return fmt.Sprintf("held for %s more: %v", h.Remaining.Round(time.Millisecond), h.Err)
}

func (h *HeldError) Unwrap() error { return h.Err }

// permanentReasoner is implemented by domain errors that no retry can mend
// (an invalid event, a conflicting payload): they say so, with the reason
// the dead letter carries.
type permanentReasoner interface{ PermanentReason() string }

// Failure is a classified error.
type Failure struct {
	Class Class
	// Reason is a short, stable name: the SQLSTATE condition, "network",
	// "timeout", "smtp_rejected"... Used in logs, metrics and DLQ attributes.
	Reason string
	// Failover is set for the signatures of a writer that went away or was
	// demoted (admin or crash shutdown, read-only transaction, a connection
	// cut mid-query): pooled connections to it are stale.
	Failover bool
}

// ErrNoAnswer is wrapped by a call to a dependency that did not answer
// within its own bound (a hang: a black-holed connection, a failover that
// queues requests): the dependency is unavailable, and the breaker counts it.
// A caller's own deadline (the handler's, a shutdown's) is not this.
var ErrNoAnswer = errors.New("no answer in time")

// Classify says what err means: the one place that decides, for domain
// errors (permanent with a reason, or held) and for the dependencies'
// errors alike. Unknown errors are transient: a redelivery is always safer
// than a dead letter, and maxReceiveCount bounds it.
func Classify(err error) Failure {
	var pgErr *pgconn.PgError
	var smtpErr *textproto.Error
	var netErr net.Error
	var permanent permanentReasoner
	var held *HeldError
	switch {
	case err == nil:
		return Failure{Class: Transient, Reason: "none"}
	case errors.As(err, &held):
		return Failure{Class: Wait, Reason: "held"}
	case errors.As(err, &permanent):
		return Failure{Class: Permanent, Reason: permanent.PermanentReason()}
	case errors.Is(err, ErrNoAnswer):
		return Failure{Class: Unavailable, Reason: "no_answer", Failover: true}
	case errors.Is(err, context.Canceled):
		return Failure{Class: Transient, Reason: "canceled"}
	case isConnectError(err) && errors.Is(err, context.DeadlineExceeded):
		// The connect timeout: the server (or the path to it) did not
		// answer the handshake in time.
		return Failure{Class: Unavailable, Reason: "connect_timeout"}
	case errors.Is(err, context.DeadlineExceeded):
		return Failure{Class: Transient, Reason: "timeout"}
	case errors.As(err, &pgErr):
		return classifySQLState(pgErr.Code)
	case errors.As(err, &smtpErr):
		return classifySMTP(smtpErr.Code)
	case pgconn.Timeout(err):
		return Failure{Class: Transient, Reason: "timeout"}
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Failure{Class: Unavailable, Reason: "connection_refused"}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		// A connection cut mid-conversation: the server went away.
		return Failure{Class: Unavailable, Reason: "connection_reset", Failover: true}
	case errors.As(err, &netErr):
		if netErr.Timeout() {
			return Failure{Class: Unavailable, Reason: "network_timeout"}
		}
		return Failure{Class: Unavailable, Reason: "network"}
	case isConnectError(err):
		return Failure{Class: Unavailable, Reason: "connect"}
	}
	return Failure{Class: Transient, Reason: "unknown"}
}

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

// classifySQLState maps PostgreSQL error codes (Appendix A of its manual).
func classifySQLState(code string) Failure {
	switch code {
	case "40001":
		return Failure{Class: Transient, Reason: "serialization_failure"}
	case "40P01":
		return Failure{Class: Transient, Reason: "deadlock_detected"}
	case "55P03":
		return Failure{Class: Transient, Reason: "lock_not_available"}
	case "57014":
		return Failure{Class: Transient, Reason: "query_canceled"}
	case "25006":
		// The writer was demoted: this connection now reaches a replica.
		return Failure{Class: Unavailable, Reason: "read_only_sql_transaction", Failover: true}
	case "57P01":
		return Failure{Class: Unavailable, Reason: "admin_shutdown", Failover: true}
	case "57P02":
		return Failure{Class: Unavailable, Reason: "crash_shutdown", Failover: true}
	case "57P03":
		return Failure{Class: Unavailable, Reason: "cannot_connect_now"}
	case "53300":
		return Failure{Class: Unavailable, Reason: "too_many_connections"}
	case "28P01", "28000":
		// The login refused: our credentials (a rotated password the
		// pool has not read yet), not the message: wait for the fix.
		return Failure{Class: Unavailable, Reason: "invalid_password"}
	}
	switch code[:2] {
	case "08": // connection exception
		return Failure{Class: Unavailable, Reason: "connection_exception", Failover: true}
	case "53", "58": // insufficient resources, system error
		return Failure{Class: Unavailable, Reason: "server_resources"}
	case "22": // data exception: the data can never fit
		return Failure{Class: Permanent, Reason: "data_exception"}
	case "23": // integrity constraint violation: the same data fails again
		return Failure{Class: Permanent, Reason: "constraint_violation"}
	}
	// Schema errors (42...) after a bad deploy and the like: retry, and let
	// the operator fix it while messages wait.
	return Failure{Class: Transient, Reason: "sqlstate_" + code}
}

// classifySMTP maps SMTP reply codes: 4xx are temporary, 421 means the
// service is going away, 5xx are refusals that a retry will meet again.
func classifySMTP(code int) Failure {
	switch {
	case code == 421:
		return Failure{Class: Unavailable, Reason: "smtp_unavailable"}
	case code == 530 || code == 534 || code == 535 || code == 538:
		// Our credentials or TLS, not the message: wait for the fix.
		return Failure{Class: Unavailable, Reason: "smtp_auth"}
	case code >= 500:
		return Failure{Class: Permanent, Reason: "smtp_rejected"}
	}
	return Failure{Class: Transient, Reason: "smtp_temporary"}
}

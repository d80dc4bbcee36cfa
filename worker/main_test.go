package worker

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// runtime starts several per message (handler, heartbeat, receive grace) and
// must stop them all by the time Run returns.
//
// The integration tests' environment (internal/testenv) is opened once per
// test binary and lives until the process ends: its database pool, the
// database breaker's probe and the SQS client's keep-alive connections are
// expected to be running then.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
		goleak.IgnoreAnyFunction("github.com/orderpipe/orderpipe/resilience.(*Breaker).probe"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

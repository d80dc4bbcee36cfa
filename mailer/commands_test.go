package mailer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// commandLog records what CommandFunc reports.
type commandLog struct {
	mu  sync.Mutex
	got []string
}

func (l *commandLog) add(command string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, command)
}

func (l *commandLog) commands() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// TestCommandFuncReportsEveryCommandTheServerReads: the commands reported
// are the ones the server reads, in order, net/smtp's implicit EHLO
// included: a new session, two emails on it (RSET before the second), a
// refused one (which closes its session), one on a new session, the
// breaker's probe, and the QUIT of the idle session at Close.
func TestCommandFuncReportsEveryCommandTheServerReads(t *testing.T) {
	stub := startStub(t)
	var log commandLog
	s, err := New(Config{Addr: stub.addr, Timeout: 5 * time.Second, CommandFunc: log.add})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		if err := s.Send(ctx, testMessage(i), nil); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	stub.refuse.Store(true)
	if err := s.Send(ctx, testMessage(2), nil); err == nil {
		t.Fatal("a refused message was sent")
	}
	stub.refuse.Store(false)
	if err := s.Send(ctx, testMessage(3), nil); err != nil {
		t.Fatalf("send 3: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	s.Close()

	email := []string{"MAIL", "RCPT", "DATA", "DATA_END"}
	var want []string
	want = append(want, "EHLO")
	want = append(want, email...)
	want = append(want, "RSET")
	want = append(want, email...)
	want = append(want, "RSET")
	want = append(want, email...) // refused at DATA_END: the session is closed
	want = append(want, "EHLO")
	want = append(want, email...)
	want = append(want, "EHLO", "QUIT") // the probe, on a connection of its own
	want = append(want, "QUIT")         // Close
	if diff := cmp.Diff(want, log.commands()); diff != "" {
		t.Errorf("commands reported (-want +got):\n%s", diff)
	}
	// Every exchange above is over before the next starts: the server
	// reads them in the same order.
	if diff := cmp.Diff(want, stub.commands()); diff != "" {
		t.Errorf("commands the server read (-reported +read):\n%s", diff)
	}
}

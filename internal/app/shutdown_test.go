package app_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/internal/testenv"
)

// The shutdown promises, with real processes signalled as ECS signals them.

// waitLogged polls a process's log until it holds msg.
func waitLogged(t *testing.T, p *proc, msg string, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, func() error {
		b, err := os.ReadFile(p.log)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), msg) {
			return fmt.Errorf("the worker has not logged %q", msg)
		}
		return nil
	})
}

// waitExit waits for a process to exit, at most within.
func waitExit(t *testing.T, p *proc, within time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("worker still running %s after the signal", within)
		return nil
	}
}

// TestSIGTERMUnderLoadDrainsAndExitsZero stops a worker with SIGTERM while
// it works through a backlog, as ECS does on a deploy. Its in-flight
// handlers take milliseconds, so it drains and exits 0 long before its
// shutdown timeout (30s here: a worker that waited it out would fail), and
// a second worker finishes the rest, every order exactly once.
func TestSIGTERMUnderLoadDrainsAndExitsZero(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "TEE", Name: "T-shirt", Price: 2500, Stock: 100_000})
	const orders = 150
	a := s.startProcess(t, "worker-a", "WORKER_SHUTDOWN_TIMEOUT=30s")
	s.publishOrders(t, orders, "term")
	s.waitBilled(t, 20)

	stopped := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, a, 10*time.Second); err != nil {
		t.Fatalf("worker exited with %v after SIGTERM, want 0", err)
	}
	t.Logf("worker exited 0 %s after SIGTERM, %d of %d orders billed", time.Since(stopped).Round(time.Millisecond), s.billed(t), orders)
	waitLogged(t, a, "worker stopped", time.Second)

	s.startProcess(t, "worker-b")
	s.assertExactlyOnce(t, orders)
}

// TestSIGTERMHandsBackWhatAReceiveBringsDuringShutdown: a receive that is
// on its way when SIGTERM arrives may still bring messages; the worker does
// not start them but hands them back at once (visibility 0), so another
// worker handles them now instead of after the queue's 30s visibility.
func TestSIGTERMHandsBackWhatAReceiveBringsDuringShutdown(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "TEE", Name: "T-shirt", Price: 2500, Stock: 1000})
	proxy := testenv.StartAWSProxy(t, testenv.Endpoint)
	a := s.startProcess(t, "worker-a", "AWS_ENDPOINT_URL="+proxy.URL, "WORKER_HANDLERS=billing")
	testenv.Eventually(t, 30*time.Second, func() error {
		if proxy.Calls("ReceiveMessage") == 0 {
			return errors.New("worker-a has not polled yet")
		}
		return nil
	})
	release := proxy.Hold("ReceiveMessage")
	defer release()
	testenv.Eventually(t, 10*time.Second, func() error {
		if proxy.Held("ReceiveMessage") == 0 {
			return errors.New("no receive of worker-a held yet")
		}
		return nil
	})
	const orders = 8
	s.publishOrders(t, orders, "handback")
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLogged(t, a, "signal received: draining", 5*time.Second)
	release() // within the receive's 2s grace: it brings the orders after shutdown began
	if err := waitExit(t, a, 10*time.Second); err != nil {
		t.Fatalf("worker exited with %v after SIGTERM, want 0", err)
	}
	waitLogged(t, a, "handed back messages received during shutdown", time.Second)
	if s.billed(t) != 0 {
		t.Fatalf("worker-a billed %d orders it received after SIGTERM", s.billed(t))
	}
	if n := proxy.Calls("ChangeMessageVisibilityBatch"); n != 1 {
		t.Errorf("worker-a made %d ChangeMessageVisibilityBatch calls, want 1 (the hand-back)", n)
	}

	// Well inside the queue's 30s visibility, or the hand-back did not happen.
	s.startProcess(t, "worker-b", "WORKER_HANDLERS=billing")
	testenv.Eventually(t, 15*time.Second, func() error {
		if n := s.billed(t); n != orders {
			return fmt.Errorf("%d of %d billed by worker-b", n, orders)
		}
		return nil
	})
}

// TestSecondSignalExitsAtOnce: a worker draining an email the SMTP server
// will not answer would wait out its shutdown timeout (60s here); a second
// signal ends it at once, non-zero.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1200, Stock: 10})
	srv := testenv.StartSMTP(t)
	hold := make(chan struct{})
	defer close(hold)
	srv.OnData(func(testenv.ReceivedMail) {
		select {
		case <-hold:
		case <-time.After(90 * time.Second): // bound: the test ends well before
		}
	})
	a := s.startProcess(t, "worker", "SMTP_ADDR="+srv.Addr, "SMTP_TIMEOUT=2m", "EMAIL_CLAIM_TTL=3m",
		"WORKER_HANDLERS=notification", "WORKER_SHUTDOWN_TIMEOUT=60s")
	ev := s.placed("second", "", "MUG", 1)
	s.publish(t, ev)
	if err := srv.WaitReceived(t.Context(), ev.Order.Customer.Email, 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLogged(t, a, "signal received: draining", 5*time.Second)
	select {
	case err := <-a.done:
		a.done <- err
		t.Fatalf("worker exited (%v) with an email in flight after one signal", err)
	default:
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := waitExit(t, a, 5*time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Errorf("after a second signal the worker exited with %v, want a non-zero status", err)
	}
	waitLogged(t, a, "second signal: stopping now", time.Second)
}

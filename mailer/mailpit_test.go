package mailer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics"
)

// TestSendToMailpitCountsEachCommandOnce: one email sent to Mailpit, with
// the commands counted as the worker counts them
// (orderpipe_smtp_commands_total), is one MAIL, one RCPT, one DATA and one
// end of data, on a session that greeted once (twice with STARTTLS), and
// Close quits it once.
func TestSendToMailpitCountsEachCommandOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped by -short")
	}
	t.Parallel()
	m := metrics.New()
	s, err := mailer.New(mailer.Config{Addr: testenv.SMTPAddr, Timeout: 5 * time.Second, CommandFunc: app.CountSMTPCommands(m, nil)})
	if err != nil {
		t.Fatal(err)
	}
	to := fmt.Sprintf("c-%s@smtp-commands.example.com", uuid.NewString()[:8])
	msg := mailer.Message{From: "Shop <shop@example.com>", To: to, Subject: "Order", MessageID: uuid.NewString() + "@example.com", Text: "hi", HTML: "<p>hi</p>"}
	if err := s.Send(context.Background(), msg, nil); err != nil {
		t.Fatalf("send: %v", err)
	}
	s.Close()
	testenv.Eventually(t, 10*time.Second, func() error {
		n, err := testenv.MailCount(context.Background(), to)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("mailpit holds %d emails to %s, want 1", n, to)
		}
		return nil
	})

	got := smtpCommands(t, m)
	want := map[string]float64{"EHLO": 1, "MAIL": 1, "RCPT": 1, "DATA": 1, "DATA_END": 1, "QUIT": 1}
	if n, ok := got["STARTTLS"]; ok { // Mailpit offers it when it has a certificate
		want["STARTTLS"], want["EHLO"] = n, 1+n
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("orderpipe_smtp_commands_total by command (-want +got):\n%s", diff)
	}
}

// smtpCommands reads orderpipe_smtp_commands_total from m's registry, by
// command.
func smtpCommands(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "orderpipe_smtp_commands_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "command" {
					out[l.GetValue()] = s.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

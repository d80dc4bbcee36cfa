// Package mailer sends email over SMTP (Mailpit locally, the SES SMTP
// interface in AWS) as multipart/alternative messages with text and HTML.
package mailer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"
)

// Message is one email.
type Message struct {
	From, To  string
	Subject   string
	MessageID string // without angle brackets; deterministic per event, so receivers can deduplicate
	Text      string
	HTML      string
}

// Config configures an SMTP sender.
type Config struct {
	// Addr is host:port of the SMTP server. Required.
	Addr string
	// Username and Password, when set, authenticate with PLAIN (only over
	// TLS, or to localhost). Password is a secret: never logged.
	Username, Password string
	// Timeout bounds one send, connection included. Defaults to 10s.
	Timeout time.Duration
}

// TimeoutDefault bounds one send.
const TimeoutDefault = 10 * time.Second

// SMTP sends mail, one connection per message.
type SMTP struct{ cfg Config }

// New returns an SMTP sender.
func New(cfg Config) (*SMTP, error) {
	if cfg.Addr == "" {
		return nil, errors.New("mailer: Config.Addr is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = TimeoutDefault
	}
	return &SMTP{cfg: cfg}, nil
}

// ErrOutcomeUnknown is wrapped by Send when the connection failed after the
// whole message was written but before the server's reply to it was read:
// the server may have accepted the message or not.
var ErrOutcomeUnknown = errors.New("smtp: delivery outcome unknown")

// Send delivers m. It uses STARTTLS whenever the server offers it.
//
// As soon as the server has accepted the message (its reply to the end of
// DATA), Send calls accepted, if not nil, and returns its error: the caller
// records the send there, before Send spends a round trip on QUIT, so that
// the window in which an accepted email is not yet recorded is as small as
// the protocol allows. A failed QUIT after acceptance is ignored: the
// message is out. An error from Send that does not come from accepted and
// does not wrap ErrOutcomeUnknown means the server did not take the message.
func (s *SMTP) Send(ctx context.Context, m Message, accepted func() error) error {
	raw, err := Compose(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, host, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := s.transact(c, host, m, raw); err != nil {
		return fmt.Errorf("smtp send to %s via %s: %w", m.To, s.cfg.Addr, err)
	}
	if accepted != nil {
		if err := accepted(); err != nil {
			return err
		}
	}
	_ = c.Quit()
	return nil
}

// Ping checks that the server answers: connect, greeting, EHLO, QUIT. The
// SMTP circuit breaker probes with it.
func (s *SMTP) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, _, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return fmt.Errorf("smtp ehlo to %s: %w", s.cfg.Addr, err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("smtp quit to %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// dial connects and reads the server's greeting; the connection lives until
// ctx's deadline.
func (s *SMTP) dial(ctx context.Context) (*smtp.Client, string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, "", fmt.Errorf("smtp dial %s: %w", s.cfg.Addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("smtp greeting from %s: %w", s.cfg.Addr, err)
	}
	return c, host, nil
}

// transact runs the SMTP dialogue up to the server's acceptance of m.
func (s *SMTP) transact(c *smtp.Client, host string, m Message, raw []byte) error {
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	}
	if s.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, host)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return fmt.Errorf("sender %q: %w", m.From, err)
	}
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("write body: %w", err)
	}
	// The server accepts the message when Close reads its reply. A reply
	// code is a refusal; a broken connection leaves the outcome open.
	if err := w.Close(); err != nil {
		if _, ok := errors.AsType[*textproto.Error](err); ok {
			return fmt.Errorf("end data: %w", err)
		}
		return fmt.Errorf("end data: %w: %w", ErrOutcomeUnknown, err)
	}
	return nil
}

// Compose renders m as an RFC 5322 message with a text and an HTML part.
func Compose(m Message) ([]byte, error) {
	for _, v := range []string{m.From, m.To, m.Subject, m.MessageID} {
		if strings.ContainsAny(v, "\r\n") {
			return nil, errors.New("mailer: header values must not contain line breaks")
		}
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct{ ctype, content string }{
		{"text/plain; charset=utf-8", m.Text},
		{"text/html; charset=utf-8", m.HTML},
	} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, fmt.Errorf("compose part: %w", err)
		}
		qp := quotedprintable.NewWriter(pw)
		if _, err := qp.Write([]byte(part.content)); err != nil {
			return nil, fmt.Errorf("compose part: %w", err)
		}
		if err := qp.Close(); err != nil {
			return nil, fmt.Errorf("compose part: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	var msg bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&msg, "%s: %s\r\n", k, v) }
	hdr("From", m.From)
	hdr("To", m.To)
	hdr("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	hdr("Date", time.Now().UTC().Format(time.RFC1123Z))
	if m.MessageID != "" {
		hdr("Message-ID", "<"+m.MessageID+">")
	}
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "multipart/alternative; boundary="+mw.Boundary())
	msg.WriteString("\r\n")
	msg.Write(body.Bytes())
	return msg.Bytes(), nil
}

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

// Send delivers m. It uses STARTTLS whenever the server offers it.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	raw, err := Compose(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("smtp dial %s: %w", s.cfg.Addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp handshake with %s: %w", s.cfg.Addr, err)
	}
	defer c.Close()
	if err := s.transact(c, host, m, raw); err != nil {
		return fmt.Errorf("smtp send to %s via %s: %w", m.To, s.cfg.Addr, err)
	}
	return nil
}

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
	// The server accepts the message when Close reads its reply.
	if err := w.Close(); err != nil {
		return fmt.Errorf("end data: %w", err)
	}
	return c.Quit()
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

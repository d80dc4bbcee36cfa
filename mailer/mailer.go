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

	"go.opentelemetry.io/otel/trace"
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
	// Timeout bounds one send, a new connection's dial, TLS and
	// authentication included. Defaults to 10s.
	Timeout time.Duration
	// MaxIdle is how many sessions are kept open between sends. Defaults to
	// MaxIdleDefault; a negative value keeps none (a session per email).
	MaxIdle int
	// IdleTimeout closes a session that has not sent for this long (servers
	// drop idle clients; SES after about 10 s). Defaults to IdleTimeoutDefault.
	IdleTimeout time.Duration
	// TracerProvider, if set, gives every send made within a trace a client
	// span (trace.go). Nil: nothing is traced.
	TracerProvider trace.TracerProvider
	// CommandFunc, if set, is called with each SMTP command as the mailer
	// issues it, before it is sent: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA,
	// DATA_END (the end of a message's data, which the server answers with
	// its verdict), RSET and QUIT; internal/app counts them. It must be
	// quick and safe for concurrent use. net/smtp sends EHLO by itself
	// (before a session's first command, and again after STARTTLS): it is
	// reported where the mailer's calls make net/smtp send it. On a failed
	// step the report is of the step the mailer asked for, not of what
	// net/smtp then sends on its own: its HELO when a server refuses EHLO
	// (neither Mailpit nor SES does), its cancel ("*") and QUIT after a
	// refused AUTH. Nil: nothing is reported.
	CommandFunc func(command string)
}

// Config defaults.
const (
	TimeoutDefault     = 10 * time.Second
	MaxIdleDefault     = 8
	IdleTimeoutDefault = 5 * time.Second
)

// SMTP sends mail over reused sessions: a session dials, greets, upgrades
// to TLS and authenticates once, then carries one email after another, with
// RSET before each reuse (which also proves it is still alive). A session
// that fails is closed; a send that failed on a reused session before any of
// the email was written is tried again once on a new session, which cannot
// duplicate it.
type SMTP struct {
	cfg    Config
	idle   chan *session
	tracer trace.Tracer // nil: tracing off
}

// session is one SMTP connection between sends.
type session struct {
	c        *smtp.Client
	conn     net.Conn
	lastUsed time.Time
}

// New returns an SMTP sender.
func New(cfg Config) (*SMTP, error) {
	if cfg.Addr == "" {
		return nil, errors.New("mailer: Config.Addr is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = TimeoutDefault
	}
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = MaxIdleDefault
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = IdleTimeoutDefault
	}
	if cfg.CommandFunc == nil {
		cfg.CommandFunc = func(string) {}
	}
	s := &SMTP{cfg: cfg, idle: make(chan *session, max(cfg.MaxIdle, 0))}
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	return s, nil
}

// ErrOutcomeUnknown is wrapped by Send when the connection failed after the
// whole message was written but before the server's reply to it was read:
// the server may have accepted the message or not.
var ErrOutcomeUnknown = errors.New("smtp: delivery outcome unknown")

// errNothingSent marks a failure on a reused session before any of the
// email was written: trying again on a new session cannot duplicate it.
var errNothingSent = errors.New("smtp: session failed before the email was sent")

// Send delivers m. It uses STARTTLS whenever the server offers it.
//
// As soon as the server has accepted the message (its reply to the end of
// DATA), Send calls accepted, if not nil, and returns its error: the caller
// records the send there, before the session does anything else (it goes
// back to the pool only after), so that the window in which an accepted
// email is not yet recorded is as small as the protocol allows. An error
// from Send that does not come from accepted and does not wrap
// ErrOutcomeUnknown means the server did not take the message.
func (s *SMTP) Send(ctx context.Context, m Message, accepted func() error) error {
	raw, err := Compose(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ctx, done := s.startSpan(ctx)
	sess, err := s.take(ctx)
	if err != nil {
		done(err, false)
		return err
	}
	reused := !sess.lastUsed.IsZero()
	err = s.transact(sess, m, raw)
	if errors.Is(err, errNothingSent) {
		sess.close()
		if sess, err = s.dial(ctx); err != nil {
			done(err, reused)
			return err
		}
		err = s.transact(sess, m, raw)
	}
	done(err, reused) // the server's verdict: the record below is the caller's
	if err != nil {
		sess.close()
		return fmt.Errorf("smtp send to %s via %s: %w", m.To, s.cfg.Addr, err)
	}
	if accepted != nil {
		if err := accepted(); err != nil {
			s.put(sess)
			return err
		}
	}
	s.put(sess)
	return nil
}

// take returns an idle session that answers RSET, or a new one.
func (s *SMTP) take(ctx context.Context) (*session, error) {
	for {
		select {
		case sess := <-s.idle:
			if time.Since(sess.lastUsed) > s.cfg.IdleTimeout {
				sess.close()
				continue
			}
			sess.setDeadline(ctx)
			s.cfg.CommandFunc("RSET")
			if err := sess.c.Reset(); err != nil {
				sess.close()
				continue
			}
			return sess, nil
		default:
			return s.dial(ctx)
		}
	}
}

// put keeps sess for the next send, or closes it when enough are idle.
func (s *SMTP) put(sess *session) {
	sess.lastUsed = time.Now()
	select {
	case s.idle <- sess:
	default:
		s.quit(sess.c)
		sess.close()
	}
}

// Close closes the idle sessions.
func (s *SMTP) Close() {
	for {
		select {
		case sess := <-s.idle:
			s.quit(sess.c)
			sess.close()
		default:
			return
		}
	}
}

// Ping checks that the server answers: connect, greeting, EHLO, QUIT, on a
// connection of its own. The SMTP circuit breaker probes with it.
func (s *SMTP) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, _, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	s.cfg.CommandFunc("EHLO")
	if err := c.Hello("localhost"); err != nil {
		return fmt.Errorf("smtp ehlo to %s: %w", s.cfg.Addr, err)
	}
	s.cfg.CommandFunc("QUIT")
	if err := c.Quit(); err != nil {
		return fmt.Errorf("smtp quit to %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// quit ends a session politely; its error changes nothing, the connection
// is closed after it.
func (s *SMTP) quit(c *smtp.Client) {
	s.cfg.CommandFunc("QUIT")
	_ = c.Quit()
}

// connect dials and reads the server's greeting; the connection's deadline
// is ctx's.
func (s *SMTP) connect(ctx context.Context) (*smtp.Client, net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("smtp dial %s: %w", s.cfg.Addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("smtp greeting from %s: %w", s.cfg.Addr, err)
	}
	return c, conn, nil
}

// dial opens a new session: greeting, STARTTLS when offered, AUTH.
func (s *SMTP) dial(ctx context.Context) (*session, error) {
	c, conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	sess := &session{c: c, conn: conn}
	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	s.cfg.CommandFunc("EHLO") // net/smtp's first, to learn the extensions
	if ok, _ := c.Extension("STARTTLS"); ok {
		s.cfg.CommandFunc("STARTTLS")
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			sess.close()
			return nil, fmt.Errorf("smtp starttls with %s: %w", s.cfg.Addr, err)
		}
		s.cfg.CommandFunc("EHLO") // net/smtp's again, over TLS
	}
	if s.cfg.Username != "" {
		s.cfg.CommandFunc("AUTH")
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, host)); err != nil {
			sess.close()
			return nil, fmt.Errorf("smtp auth with %s: %w", s.cfg.Addr, err)
		}
	}
	return sess, nil
}

func (sess *session) setDeadline(ctx context.Context) {
	deadline, _ := ctx.Deadline()
	_ = sess.conn.SetDeadline(deadline)
}

func (sess *session) close() { _ = sess.c.Close() }

// transact runs one email's SMTP transaction up to the server's verdict.
func (s *SMTP) transact(sess *session, m Message, raw []byte) error {
	c := sess.c
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return fmt.Errorf("sender %q: %w", m.From, err)
	}
	reused := !sess.lastUsed.IsZero()
	nothingSent := func(step string, err error) error {
		var refused *textproto.Error
		if reused && !errors.As(err, &refused) {
			return fmt.Errorf("%s: %w: %w", step, errNothingSent, err)
		}
		return fmt.Errorf("%s: %w", step, err)
	}
	s.cfg.CommandFunc("MAIL")
	if err := c.Mail(from.Address); err != nil {
		return nothingSent("mail from", err)
	}
	s.cfg.CommandFunc("RCPT")
	if err := c.Rcpt(m.To); err != nil {
		return nothingSent("rcpt to", err)
	}
	s.cfg.CommandFunc("DATA")
	w, err := c.Data()
	if err != nil {
		return nothingSent("data", err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("write body: %w", err)
	}
	// The server accepts the message when Close reads its reply. A reply
	// code is a refusal; a broken connection leaves the outcome open.
	s.cfg.CommandFunc("DATA_END")
	if err := w.Close(); err != nil {
		if _, refused := errors.AsType[*textproto.Error](err); refused {
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

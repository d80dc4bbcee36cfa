package faults

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"
)

// SMTPServer is a small SMTP server of one test's (or drill's) own, for the
// faults a real mail server does not stage on demand: a connection that dies after
// the whole message was sent and before the verdict, a server that answers
// slowly, a hook that runs between receiving a message and accepting it.
// It keeps every message whose DATA it received completely, accepted or
// not, so a test can count what a recipient might have got.
type SMTPServer struct {
	Addr string

	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	received []ReceivedMail
	mode     SMTPMode
	dropNext int
	dropped  int
	delay    time.Duration
	onData   func(ReceivedMail)
	conns    map[net.Conn]bool
}

// ReceivedMail is one message whose DATA the server read to the end.
type ReceivedMail struct {
	To        string
	MessageID string
}

// SMTPMode is what the server does once it has read a message's DATA.
type SMTPMode int

// Modes.
const (
	SMTPAccept            SMTPMode = iota // reply 250
	SMTPDropBeforeVerdict                 // close the connection without a reply
	SMTPRefuse                            // reply 554
)

// NewSMTPServer starts a server on a free port of 127.0.0.1, accepting
// every message; Close stops it.
func NewSMTPServer(ctx context.Context) (*SMTPServer, error) {
	ln, err := listenLocal(ctx)
	if err != nil {
		return nil, err
	}
	s := &SMTPServer{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// SetMode sets what happens to the next messages.
func (s *SMTPServer) SetMode(m SMTPMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// DropNext makes the next n messages end as SMTPDropBeforeVerdict does,
// whatever the mode.
func (s *SMTPServer) DropNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropNext = n
}

// SetDelay makes every reply after the greeting wait d (a slow server).
func (s *SMTPServer) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// OnData sets a hook run after a message's DATA is read and before the
// server's verdict; the verdict waits for it.
func (s *SMTPServer) OnData(fn func(ReceivedMail)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onData = fn
}

// Received returns the messages read so far whose recipient contains to.
func (s *SMTPServer) Received(to string) []ReceivedMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ReceivedMail
	for _, m := range s.received {
		if strings.Contains(m.To, to) {
			out = append(out, m)
		}
	}
	return out
}

// Dropped returns how many messages ended without a verdict: read to the
// end of their DATA, then the connection closed.
func (s *SMTPServer) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Copies returns, for the messages read so far whose recipient contains
// to, how many there were and how many of them repeat a Message-ID read
// before (a second copy of one email).
func (s *SMTPServer) Copies(to string) (mails, repeats int) {
	seen := map[string]bool{}
	for _, m := range s.Received(to) {
		mails++
		if m.MessageID != "" && seen[m.MessageID] {
			repeats++
		}
		seen[m.MessageID] = true
	}
	return mails, repeats
}

// Close stops the server and closes its connections.
func (s *SMTPServer) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *SMTPServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			s.session(c)
		})
	}
}

// sessionLimit bounds one session, so a client that goes away silently
// cannot keep a goroutine past the test.
const sessionLimit = 2 * time.Minute

func (s *SMTPServer) session(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(sessionLimit))
	r := bufio.NewReader(c)
	reply := func(line string) bool {
		s.mu.Lock()
		d := s.delay
		s.mu.Unlock()
		if d > 0 {
			time.Sleep(d) // the fault being staged: a slow server
		}
		_, err := fmt.Fprintf(c, "%s\r\n", line)
		return err == nil
	}
	if _, err := fmt.Fprintf(c, "220 testenv ESMTP\r\n"); err != nil {
		return
	}
	var to string
	for {
		line, err := r.ReadString('\n')
		if err != nil || !s.command(r, line, &to, reply) {
			return
		}
	}
}

// command answers one command line of a session (reading the message after
// DATA); false ends the session. to is the session's recipient.
func (s *SMTPServer) command(r *bufio.Reader, line string, to *string, reply func(string) bool) bool {
	cmd := strings.ToUpper(strings.TrimSpace(line))
	switch {
	case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
		return reply("250-testenv\r\n250 8BITMIME")
	case strings.HasPrefix(cmd, "MAIL FROM"):
		*to = ""
		return reply("250 ok")
	case strings.HasPrefix(cmd, "RCPT TO"):
		*to = strings.Trim(strings.TrimSpace(line)[len("RCPT TO:"):], "<> ")
		return reply("250 ok")
	case cmd == "DATA":
		if !reply("354 go ahead") {
			return false
		}
		m, ok := readData(r, *to)
		return ok && s.verdict(m, reply)
	case cmd == "RSET", cmd == "NOOP":
		return reply("250 ok")
	case cmd == "QUIT":
		reply("221 bye")
		return false
	default:
		return reply("502 not implemented")
	}
}

// verdict keeps m and answers it as the mode says; false ends the session.
func (s *SMTPServer) verdict(m ReceivedMail, reply func(string) bool) bool {
	s.mu.Lock()
	s.received = append(s.received, m)
	mode, hook := s.mode, s.onData
	if s.dropNext > 0 {
		s.dropNext--
		mode = SMTPDropBeforeVerdict
	}
	s.mu.Unlock()
	if hook != nil {
		hook(m)
	}
	switch mode {
	case SMTPDropBeforeVerdict:
		s.mu.Lock()
		s.dropped++
		s.mu.Unlock()
		return false
	case SMTPRefuse:
		return reply("554 refused by the test")
	default: // SMTPAccept
		return reply("250 queued")
	}
}

// readData reads a message up to the line holding a single dot.
func readData(r *bufio.Reader, to string) (ReceivedMail, bool) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return ReceivedMail{}, false
		}
		if line == ".\r\n" || line == ".\n" {
			break
		}
		b.WriteString(strings.TrimPrefix(line, "."))
	}
	m := ReceivedMail{To: to}
	if msg, err := mail.ReadMessage(strings.NewReader(b.String())); err == nil {
		m.MessageID = strings.Trim(msg.Header.Get("Message-Id"), "<>")
	}
	return m, true
}

// WaitReceived polls until the server read n messages for to, or timeout.
func (s *SMTPServer) WaitReceived(ctx context.Context, to string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got := len(s.Received(to))
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("smtp server read %d messages for %s within %s, want %d", got, to, timeout, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

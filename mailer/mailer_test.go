package mailer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestComposeHasTextAndHTMLParts(t *testing.T) {
	raw, err := Compose(Message{
		From: "Shop <shop@example.com>", To: "ada@example.com", Subject: "Order ö1 confirmed",
		MessageID: "abc.notification@example.com", Text: "Hello Ada = friend", HTML: "<p>Hello Ada</p>",
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("not a parseable message: %v", err)
	}
	if got := msg.Header.Get("Message-Id"); got != "<abc.notification@example.com>" {
		t.Errorf("Message-ID = %q", got)
	}
	dec := new(mime.WordDecoder)
	if subj, _ := dec.DecodeHeader(msg.Header.Get("Subject")); subj != "Order ö1 confirmed" {
		t.Errorf("Subject = %q", subj)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v)", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	want := map[string]string{"text/plain; charset=utf-8": "Hello Ada = friend", "text/html; charset=utf-8": "<p>Hello Ada</p>"}
	for range 2 {
		p, err := mr.NextPart() // decodes quoted-printable
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		ct := p.Header.Get("Content-Type")
		if want[ct] != string(body) {
			t.Errorf("part %s = %q, want %q", ct, body, want[ct])
		}
		delete(want, ct)
	}
	if len(want) != 0 {
		t.Errorf("missing parts: %v", want)
	}
}

func TestComposeRefusesHeaderInjection(t *testing.T) {
	_, err := Compose(Message{From: "a@example.com", To: "b@example.com\r\nBcc: c@example.com", Subject: "x"})
	if err == nil {
		t.Fatal("a line break in a header value was accepted")
	}
}

// smtpStub is a minimal SMTP server that counts what the sessions reuse
// is about: connections, RSETs and messages accepted; and records every
// command it reads.
type smtpStub struct {
	addr                  string
	conns, resets, emails atomic.Int32
	dropIdle              atomic.Bool // close every connection once a message is accepted
	refuse                atomic.Bool // refuse every message at the end of its DATA

	mu   sync.Mutex
	read []string // the commands read, by verb; DATA_END for the end of a message
}

func (s *smtpStub) record(verb string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read = append(s.read, verb)
}

// commands returns the commands the stub has read, in order.
func (s *smtpStub) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.read)
}

func startStub(t *testing.T) *smtpStub {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpStub{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			wg.Go(func() { s.serve(c) })
		}
	})
	return s
}

func (s *smtpStub) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) { _, _ = fmt.Fprintf(c, "%s\r\n", line) }
	say("220 stub")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if verb, _, _ := strings.Cut(strings.TrimSpace(line), " "); verb != "" {
			s.record(strings.ToUpper(verb))
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250 stub")
		case cmd == "RSET":
			s.resets.Add(1)
			say("250 ok")
		case cmd == "DATA":
			say("354 go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			s.record("DATA_END")
			if s.refuse.Load() {
				say("554 refused")
				continue
			}
			s.emails.Add(1)
			say("250 queued")
			if s.dropIdle.Load() {
				return
			}
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

func testMessage(n int) Message {
	return Message{From: "Shop <shop@example.com>", To: fmt.Sprintf("c%d@example.com", n), Subject: "Order", MessageID: fmt.Sprintf("m%d@example.com", n), Text: "hi", HTML: "<p>hi</p>"}
}

// TestSessionsAreReused: one session carries one email after another, with
// RSET before each reuse, and every email is recorded (accepted called)
// before the session goes on.
func TestSessionsAreReused(t *testing.T) {
	stub := startStub(t)
	s, err := New(Config{Addr: stub.addr, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 5 {
		recorded := false
		if err := s.Send(context.Background(), testMessage(i), func() error { recorded = true; return nil }); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if !recorded {
			t.Fatalf("send %d returned before its acceptance was recorded", i)
		}
	}
	if c, r, e := stub.conns.Load(), stub.resets.Load(), stub.emails.Load(); c != 1 || r != 4 || e != 5 {
		t.Errorf("connections %d, RSETs %d, emails %d; want 1, 4, 5", c, r, e)
	}
}

// TestADeadSessionIsReplacedWithoutADuplicate: when the server closed an
// idle session, the next send finds out at RSET (nothing of the email
// written) and sends on a new session: each email arrives once.
func TestADeadSessionIsReplacedWithoutADuplicate(t *testing.T) {
	stub := startStub(t)
	stub.dropIdle.Store(true)
	s, err := New(Config{Addr: stub.addr, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if err := s.Send(context.Background(), testMessage(i), nil); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if c, e := stub.conns.Load(), stub.emails.Load(); c != 3 || e != 3 {
		t.Errorf("connections %d, emails %d; want 3 and 3 (a new session for each, no email twice)", c, e)
	}
}

// TestIdleSessionsRunOut: a session idle longer than IdleTimeout is not
// reused.
func TestIdleSessionsRunOut(t *testing.T) {
	stub := startStub(t)
	s, err := New(Config{Addr: stub.addr, Timeout: 5 * time.Second, IdleTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 2 {
		if err := s.Send(context.Background(), testMessage(i), nil); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		time.Sleep(5 * time.Millisecond) // the staged idle time, past IdleTimeout
	}
	if c := stub.conns.Load(); c != 2 {
		t.Errorf("connections %d, want 2 (the idle session ran out)", c)
	}
}

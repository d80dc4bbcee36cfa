package mailer

import (
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
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

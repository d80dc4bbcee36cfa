package mailer

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestSendSpans: with a tracer provider, a send made within a trace gets
// an "smtp send" span, the child of the caller's, saying the server's
// verdict and whether the session was reused, and nothing of the
// message's addresses; a send outside any trace (the breaker's probe's
// kind of call) gets none.
func TestSendSpans(t *testing.T) {
	stub := startStub(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	s, err := New(Config{Addr: stub.addr, Timeout: 5 * time.Second, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "notification order.placed")
	for i := range 2 {
		if err := s.Send(ctx, testMessage(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	stub.refuse.Store(true)
	if err := s.Send(ctx, testMessage(2), nil); err == nil {
		t.Fatal("a refused message was sent")
	}
	stub.refuse.Store(false)
	if err := s.Send(context.Background(), testMessage(3), nil); err != nil {
		t.Fatal(err)
	}
	parent.End()

	var got []string
	for _, sp := range exp.GetSpans() {
		if sp.Name != "smtp send" {
			continue
		}
		if sp.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("smtp span's parent %s, want the caller's %s", sp.Parent.SpanID(), parent.SpanContext().SpanID())
		}
		var attrs []string
		for _, a := range sp.Attributes {
			attrs = append(attrs, string(a.Key)+"="+a.Value.String())
			if strings.Contains(a.Value.String(), "@") {
				t.Errorf("span attribute %s names an address: %s", a.Key, a.Value.String())
			}
		}
		got = append(got, strings.Join(attrs, " ")+" status="+sp.Status.Code.String())
		if sp.Status.Code == codes.Error && sp.Status.Description != "refused" {
			t.Errorf("status %+v, want the verdict only", sp.Status)
		}
	}
	want := []string{
		"smtp.outcome=accepted smtp.session_reused=false status=Unset",
		"smtp.outcome=accepted smtp.session_reused=true status=Unset",
		"smtp.outcome=refused smtp.session_reused=true status=Error",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("smtp spans:\n%s\nwant (the send outside a trace has none):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

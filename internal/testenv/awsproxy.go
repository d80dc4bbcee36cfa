package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// AWSProxy is an HTTP reverse proxy in front of the SNS/SQS endpoint that
// fails chosen API calls the way AWS and networks do: connection resets,
// 500s, throttling, hangs. A worker pointed at it (AWS_ENDPOINT_URL) meets
// the faults; everything else passes through.
type AWSProxy struct {
	URL string

	srv *http.Server
	rp  *httputil.ReverseProxy

	mu     sync.Mutex
	faults map[string]AWSFault      // by action name
	counts map[string]int           // faulted calls by action
	calls  map[string]int           // every call by action
	holds  map[string]chan struct{} // held actions, until the channel closes
	held   map[string]int           // calls waiting on a hold, by action
}

// AWSFault is what a faulted call gets.
type AWSFault int

// Faults.
const (
	// AWSReset closes the connection with a TCP reset, no answer.
	AWSReset AWSFault = iota + 1
	// AWSInternalError answers 500 InternalError.
	AWSInternalError
	// AWSThrottle answers 400 with a throttling error.
	AWSThrottle
)

// StartAWSProxy starts a proxy to upstream (the emulator's URL) on a free
// port of 127.0.0.1; it stops when the test ends.
func StartAWSProxy(t testing.TB, upstream string) *AWSProxy {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("aws proxy upstream %q: %v", upstream, err)
	}
	ln, err := listenLocal(t)
	if err != nil {
		t.Fatalf("aws proxy listener: %v", err)
	}
	p := &AWSProxy{URL: "http://" + ln.Addr().String(), rp: httputil.NewSingleHostReverseProxy(target),
		faults: map[string]AWSFault{}, counts: map[string]int{}, calls: map[string]int{}, holds: map[string]chan struct{}{}, held: map[string]int{}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// Fail makes every call of action (PublishBatch, ReceiveMessage,
// DeleteMessageBatch...) meet f, until Clear.
func (p *AWSProxy) Fail(action string, f AWSFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[action] = f
}

// Clear lets every call through again.
func (p *AWSProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = map[string]AWSFault{}
}

// holdLimit bounds how long a held call waits for its release.
const holdLimit = 30 * time.Second

// Hold makes the calls of action wait, before they reach the upstream, until
// release is called (or holdLimit passes).
func (p *AWSProxy) Hold(action string) (release func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	p.holds[action] = ch
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			delete(p.holds, action)
			p.mu.Unlock()
			close(ch)
		})
	}
}

// Held returns how many calls of action wait on a hold now.
func (p *AWSProxy) Held(action string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[action]
}

// Calls returns how many calls of action the proxy has seen.
func (p *AWSProxy) Calls(action string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[action]
}

// Faulted returns how many calls of action met a fault.
func (p *AWSProxy) Faulted(action string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[action]
}

// ServeHTTP implements http.Handler.
func (p *AWSProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	action := awsAction(r, body)
	p.mu.Lock()
	p.calls[action]++
	f, faulted := p.faults[action]
	if faulted {
		p.counts[action]++
	}
	hold := p.holds[action]
	if hold != nil {
		p.held[action]++
	}
	p.mu.Unlock()
	if hold != nil && !p.wait(action, hold, r) {
		return
	}
	switch {
	case !faulted:
		p.rp.ServeHTTP(w, r)
	case f == AWSReset:
		reset(w)
	case f == AWSInternalError:
		awsError(w, r, http.StatusInternalServerError, "InternalError", "staged by the test")
	case f == AWSThrottle:
		awsError(w, r, http.StatusBadRequest, "ThrottlingException", "Rate exceeded (staged by the test)")
	}
}

// wait waits for a hold's release; false if the caller gave up first.
func (p *AWSProxy) wait(action string, hold chan struct{}, r *http.Request) bool {
	defer func() {
		p.mu.Lock()
		p.held[action]--
		p.mu.Unlock()
	}()
	select {
	case <-hold:
	case <-time.After(holdLimit):
	case <-r.Context().Done():
		return false
	}
	return true
}

// awsAction names the API call: SQS speaks JSON with X-Amz-Target
// "AmazonSQS.<Action>", SNS the query protocol with Action=<Action>.
func awsAction(r *http.Request, body []byte) string {
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		return target[strings.LastIndexByte(target, '.')+1:]
	}
	if v, err := url.ParseQuery(string(body)); err == nil {
		return v.Get("Action")
	}
	return ""
}

// reset closes the client's connection with a TCP reset.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("aws proxy: response writer cannot hijack")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// awsError answers in the protocol the caller speaks.
func awsError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if r.Header.Get("X-Amz-Target") != "" {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-Query-Error", code+";Sender")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"__type":"com.amazonaws.sqs#%s","message":%q}`, code, msg)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse><Error><Type>Receiver</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>test</RequestId></ErrorResponse>`, code, msg)
}

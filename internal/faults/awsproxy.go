package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AWSProxy is an HTTP reverse proxy in front of the SNS/SQS endpoint that
// fails chosen API calls the way AWS and networks do: connection resets,
// 500s, 503s, throttling, hangs, batch deletes with some entries failed. A
// worker pointed at it (AWS_ENDPOINT_URL) meets the faults; everything else
// passes through.
type AWSProxy struct {
	URL string

	upstream *url.URL
	srv      *http.Server
	rp       *httputil.ReverseProxy
	client   *http.Client

	mu         sync.Mutex
	faults     map[string]AWSFault      // by action name
	counts     map[string]int           // faulted calls by action
	calls      map[string]int           // every call by action
	holds      map[string]chan struct{} // held actions, until the channel closes
	held       map[string]int           // calls waiting on a hold, by action
	errorRate  float64                  // share of every call answered with a random error
	deleteRate float64                  // share of DeleteMessageBatch entries failed
	failedDels int                      // entries answered as failed
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
	// AWSUnavailable answers 503 ServiceUnavailable.
	AWSUnavailable
)

// NewAWSProxy starts a proxy to upstream (the emulator's URL) on a free
// port of 127.0.0.1; Close stops it.
func NewAWSProxy(ctx context.Context, upstream string) (*AWSProxy, error) {
	target, err := url.Parse(upstream)
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("faults: aws proxy upstream %q is not a URL", upstream)
	}
	ln, err := listenLocal(ctx)
	if err != nil {
		return nil, err
	}
	p := &AWSProxy{URL: "http://" + ln.Addr().String(), upstream: target, rp: httputil.NewSingleHostReverseProxy(target),
		client: &http.Client{Timeout: time.Minute},
		faults: map[string]AWSFault{}, counts: map[string]int{}, calls: map[string]int{}, holds: map[string]chan struct{}{}, held: map[string]int{}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy and closes its connections.
func (p *AWSProxy) Close() error {
	if err := p.srv.Close(); err != nil {
		return fmt.Errorf("faults: close aws proxy: %w", err)
	}
	return nil
}

// listenLocal listens on a free port of 127.0.0.1.
func listenLocal(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faults: listen on 127.0.0.1: %w", err)
	}
	return l, nil
}

// Fail makes every call of action (PublishBatch, ReceiveMessage,
// DeleteMessageBatch...) meet f, until Clear.
func (p *AWSProxy) Fail(action string, f AWSFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[action] = f
}

// Clear lets every call through again: no fault by action, no error rate,
// no failed deletes.
func (p *AWSProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = map[string]AWSFault{}
	p.errorRate, p.deleteRate = 0, 0
}

// SetErrorRate makes a share rate (0 to 1) of every call, of any action,
// SQS or SNS, answer one of 500 InternalError, 503 ServiceUnavailable or a
// throttling error, picked at random, without reaching the upstream.
func (p *AWSProxy) SetErrorRate(rate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errorRate = rate
}

// SetDeleteFailRate makes each entry of a DeleteMessageBatch that is not
// otherwise faulted fail with probability rate: the entry is not passed on
// (the message stays in its queue) and the answer lists it as failed with
// InternalError, as SQS does when part of a batch fails.
func (p *AWSProxy) SetDeleteFailRate(rate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deleteRate = rate
}

// FailedDeleteEntries returns how many DeleteMessageBatch entries were
// answered as failed.
func (p *AWSProxy) FailedDeleteEntries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failedDels
}

// FaultedTotal returns how many calls met a fault, of every action.
func (p *AWSProxy) FaultedTotal() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.counts {
		n += c
	}
	return n
}

// CallsTotal returns how many calls the proxy has seen, of every action.
func (p *AWSProxy) CallsTotal() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		n += c
	}
	return n
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
	if !faulted && p.errorRate > 0 && rand.Float64() < p.errorRate {
		f, faulted = []AWSFault{AWSInternalError, AWSUnavailable, AWSThrottle}[rand.IntN(3)], true
	}
	if faulted {
		p.counts[action]++
	}
	hold := p.holds[action]
	if hold != nil {
		p.held[action]++
	}
	deleteRate := p.deleteRate
	p.mu.Unlock()
	if hold != nil && !p.wait(action, hold, r) {
		return
	}
	switch {
	case !faulted && action == "DeleteMessageBatch" && deleteRate > 0:
		p.partialDelete(w, r, body, deleteRate)
	case !faulted:
		p.rp.ServeHTTP(w, r)
	case f == AWSReset:
		reset(w)
	case f == AWSInternalError:
		awsError(w, r, http.StatusInternalServerError, "InternalError", "staged by the fault proxy")
	case f == AWSUnavailable:
		awsError(w, r, http.StatusServiceUnavailable, "ServiceUnavailable", "staged by the fault proxy")
	case f == AWSThrottle:
		code := "ThrottlingException"
		if r.Header.Get("X-Amz-Target") == "" {
			code = "Throttling" // SNS's query protocol
		}
		awsError(w, r, http.StatusBadRequest, code, "Rate exceeded (staged by the fault proxy)")
	}
}

// deleteBatch is the body of an SQS DeleteMessageBatch (JSON protocol) and
// of its answer: AWS's shapes, AWS's names.
//
//nolint:tagliatelle // SQS's JSON protocol names the fields
type (
	deleteEntry struct {
		ID            string `json:"Id"`
		ReceiptHandle string `json:"ReceiptHandle"`
	}
	deleteRequest struct {
		QueueURL string        `json:"QueueUrl"`
		Entries  []deleteEntry `json:"Entries"`
	}
	deleteFailure struct {
		ID          string `json:"Id"`
		Code        string `json:"Code"`
		Message     string `json:"Message"`
		SenderFault bool   `json:"SenderFault"`
	}
	deleteAnswer struct {
		Successful []json.RawMessage `json:"Successful"`
		Failed     []deleteFailure   `json:"Failed"`
	}
)

// partialDelete passes on a DeleteMessageBatch without a random share of
// its entries, and answers those as failed alongside what the upstream said.
func (p *AWSProxy) partialDelete(w http.ResponseWriter, r *http.Request, body []byte, rate float64) {
	var req deleteRequest
	if r.Header.Get("X-Amz-Target") == "" || json.Unmarshal(body, &req) != nil {
		p.rp.ServeHTTP(w, r)
		return
	}
	var kept []deleteEntry
	var failed []deleteFailure
	for _, e := range req.Entries {
		if rand.Float64() < rate {
			failed = append(failed, deleteFailure{ID: e.ID, Code: "InternalError", Message: "staged by the fault proxy"})
			continue
		}
		kept = append(kept, e)
	}
	if len(failed) == 0 {
		p.rp.ServeHTTP(w, r)
		return
	}
	ans := deleteAnswer{Successful: []json.RawMessage{}}
	if len(kept) > 0 {
		req.Entries = kept
		up, err := p.forward(r, req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		ans = up
	}
	ans.Failed = append(ans.Failed, failed...)
	p.mu.Lock()
	p.failedDels += len(failed)
	p.mu.Unlock()
	b, err := json.Marshal(ans)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_, _ = w.Write(b)
}

// forward sends req to the upstream with r's headers (the emulator checks
// no signature) and decodes its answer.
func (p *AWSProxy) forward(r *http.Request, req deleteRequest) (deleteAnswer, error) {
	var ans deleteAnswer
	b, err := json.Marshal(req)
	if err != nil {
		return ans, fmt.Errorf("faults: encode delete batch: %w", err)
	}
	u := *p.upstream
	u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
	up, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u.String(), bytes.NewReader(b))
	if err != nil {
		return ans, fmt.Errorf("faults: delete batch: %w", err)
	}
	up.Header = r.Header.Clone()
	up.Header.Set("Content-Length", strconv.Itoa(len(b)))
	resp, err := p.client.Do(up)
	if err != nil {
		return ans, fmt.Errorf("faults: delete batch upstream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ans, fmt.Errorf("faults: delete batch upstream answered %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return ans, fmt.Errorf("faults: decode delete batch answer: %w", err)
	}
	if ans.Successful == nil {
		ans.Successful = []json.RawMessage{}
	}
	return ans, nil
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

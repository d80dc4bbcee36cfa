package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// httpClient is an otlptrace.Client that POSTs spans to an OTLP/HTTP
// endpoint as binary protobuf. It stands in for otlptracehttp, whose
// module links gRPC (its request type's package carries the gRPC service):
// the worker would ship a gRPC stack it never uses. The body is a
// TracesData message, which the OTLP specification keeps wire-identical to
// ExportTraceServiceRequest (both are `repeated ResourceSpans
// resource_spans = 1`). The spans themselves are converted by otlptrace,
// the SDK's own code.
type httpClient struct {
	url     string
	headers map[string]string
	timeout time.Duration
	client  *http.Client
}

// Export retries: the OTLP/HTTP specification's retryable answers (429,
// 502, 503, 504) and failed connections are tried again, at most
// exportAttempts times in all, within the export's timeout.
const (
	exportAttempts   = 3
	exportRetryWait  = 500 * time.Millisecond
	maxResponseBytes = 64 << 10
)

func newHTTPClient(endpoint string, headers map[string]string, timeout time.Duration) *httpClient {
	return &httpClient{url: endpoint, headers: headers, timeout: timeout, client: &http.Client{}}
}

// Start implements otlptrace.Client: nothing to open (connections are made
// on the first export).
func (c *httpClient) Start(context.Context) error { return nil }

// Stop implements otlptrace.Client.
func (c *httpClient) Stop(context.Context) error {
	c.client.CloseIdleConnections()
	return nil
}

// UploadTraces implements otlptrace.Client, within the client's timeout.
func (c *httpClient) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	body, err := proto.Marshal(&tracepb.TracesData{ResourceSpans: spans})
	if err != nil {
		return fmt.Errorf("otlp: encode spans: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		wait, err := c.post(ctx, body)
		if err == nil || wait < 0 || attempt == exportAttempts {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (then %w)", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// post sends body once. On failure it returns how long to wait before
// trying again, or a negative wait when trying again cannot help.
func (c *httpClient) post(ctx context.Context, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return -1, errors.New("otlp: cannot build a request for the endpoint") // the URL may carry credentials: not echoed
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := c.client.Do(req)
	if err != nil {
		// *url.Error names the URL; the URL may carry credentials.
		if uerr, ok := errors.AsType[*url.Error](err); ok {
			err = uerr.Err
		}
		return exportRetryWait, fmt.Errorf("otlp: export: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes)) // the response holds only partial-success counts
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway,
		resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
		return retryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("otlp: export: the collector answered %s", resp.Status)
	}
	return -1, fmt.Errorf("otlp: export: the collector refused the spans: %s", resp.Status)
}

// retryAfter is the wait a Retry-After header (in seconds) asks for, or
// exportRetryWait; the export's timeout bounds it either way.
func retryAfter(h string) time.Duration {
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return exportRetryWait
}

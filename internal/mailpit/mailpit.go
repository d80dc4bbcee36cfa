// Package mailpit asks a Mailpit server how many emails it holds, for the
// tests and the failover drill.
package mailpit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// Count returns how many emails the Mailpit at baseURL holds whose To
// contains s.
func Count(ctx context.Context, baseURL, s string) (int, error) {
	q := url.Values{"query": {fmt.Sprintf("to:%q", s)}, "limit": {"1"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/api/v1/search?"+q.Encode(), nil)
	if err != nil {
		return 0, fmt.Errorf("mailpit search: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("mailpit search: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("mailpit search: %s", resp.Status)
	}
	var out struct {
		Count int `json:"messages_count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("mailpit search: %w", err)
	}
	return out.Count, nil
}

package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/worker"
	"github.com/orderpipe/orderpipe/worker/internal/sqsfake"
)

// TestNewNamesTheBadField: New refuses a bad Config, naming the field.
func TestNewNamesTheBadField(t *testing.T) {
	t.Parallel()
	valid := worker.Config{Name: "n", QueueURL: srcURL, DLQURL: dlqURL}
	for _, tt := range []struct {
		name      string
		change    func(*worker.Config)
		wantField string // "" for valid
	}{
		{name: "valid with defaults", change: func(*worker.Config) {}},
		{name: "no name", change: func(c *worker.Config) { c.Name = "" }, wantField: "Config.Name"},
		{name: "no queue", change: func(c *worker.Config) { c.QueueURL = "" }, wantField: "Config.QueueURL"},
		{name: "no DLQ", change: func(c *worker.Config) { c.DLQURL = "" }, wantField: "Config.DLQURL"},
		{name: "wait over the SQS limit", change: func(c *worker.Config) { c.WaitTime = 21 * time.Second }, wantField: "Config.WaitTime"},
		{name: "visibility under 2s", change: func(c *worker.Config) { c.VisibilityTimeout = time.Second }, wantField: "Config.VisibilityTimeout"},
		{name: "visibility over the SQS limit", change: func(c *worker.Config) { c.VisibilityTimeout = 13 * time.Hour }, wantField: "Config.VisibilityTimeout"},
		{name: "visibility at the SQS limit", change: func(c *worker.Config) { c.VisibilityTimeout = 12 * time.Hour }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.change(&cfg)
			_, err := worker.New(sqsfake.New(), worker.HandlerFunc(nil), cfg)
			switch {
			case tt.wantField == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantField != "" && (err == nil || !strings.Contains(err.Error(), tt.wantField)):
				t.Errorf("New: %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
}

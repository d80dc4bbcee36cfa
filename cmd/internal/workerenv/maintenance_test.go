package workerenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/internal/app"
)

// TestLedgerRetentionShorterThanTheDLQsPlusAMarginIsRefused: the worker
// refuses at start, naming LEDGER_RETENTION and the minimum, a retention
// under the DLQ's 14 days plus a day's margin, since a dead letter SQS
// still holds could then be redriven after its ledger rows were removed
// and be applied twice. Unset, the retention is the topology's default:
// the DLQ's 14 days plus the queue's 4 plus the margin, 19 days.
// MAINTENANCE_INTERVAL=0 turns this process's maintenance off.
func TestLedgerRetentionShorterThanTheDLQsPlusAMarginIsRefused(t *testing.T) {
	hermeticAWS(t)
	const day = 24 * time.Hour
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr string // "" when accepted
		want    app.MaintenanceConfig
	}{
		{"the default", map[string]string{}, "", app.MaintenanceConfig{Retention: 19 * day, Interval: app.MaintenanceIntervalDefault}},
		{"the DLQ's retention alone", map[string]string{"LEDGER_RETENTION": "14d"}, "want 15d or more", app.MaintenanceConfig{}},
		{"seconds", map[string]string{"LEDGER_RETENTION": "5s"}, "want 15d or more", app.MaintenanceConfig{}},
		{"an hour short of the minimum", map[string]string{"LEDGER_RETENTION": "359h"}, "want 15d or more", app.MaintenanceConfig{}},
		{"not a duration", map[string]string{"LEDGER_RETENTION": "a fortnight"}, "want days", app.MaintenanceConfig{}},
		{"the minimum, as hours", map[string]string{"LEDGER_RETENTION": "360h"}, "", app.MaintenanceConfig{Retention: 15 * day, Interval: app.MaintenanceIntervalDefault}},
		{"a year, maintenance elsewhere", map[string]string{"LEDGER_RETENTION": "365d", "MAINTENANCE_INTERVAL": "0"}, "", app.MaintenanceConfig{Off: true, Retention: 365 * day}},
		{"a bad interval", map[string]string{"MAINTENANCE_INTERVAL": "often"}, "MAINTENANCE_INTERVAL", app.MaintenanceConfig{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := Load(lookupMap(tt.vars))
			err := w.Check(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				got := w.App.Maintenance
				if got.Off != tt.want.Off || got.Retention != tt.want.Retention || got.Interval != tt.want.Interval {
					t.Errorf("maintenance off %v, retention %s, interval %s; want %v, %s, %s",
						got.Off, got.Retention, got.Interval, tt.want.Off, tt.want.Retention, tt.want.Interval)
				}
				return
			}
			name := "LEDGER_RETENTION"
			if _, ok := tt.vars[name]; !ok {
				name = "MAINTENANCE_INTERVAL"
			}
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check() = %v, want a refusal naming %s and saying %q", err, name, tt.wantErr)
			}
		})
	}
}

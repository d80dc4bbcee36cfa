package workerenv

import (
	"github.com/orderpipe/orderpipe/cmd/internal/env"
	"github.com/orderpipe/orderpipe/internal/app"
)

// loadMaintenance reads MAINTENANCE_INTERVAL and puts LEDGER_RETENTION
// (read with the shared variables) into the worker's retention
// maintenance.
func loadMaintenance(e *env.Env, common env.Common) app.MaintenanceConfig {
	interval := e.DurationOrOff("MAINTENANCE_INTERVAL", app.MaintenanceIntervalDefault,
		"how often the retention maintenance runs, for the whole fleet (one worker at a time holds its lease); 0 turns it off in this process, for when `orderctl maintain` runs on a schedule instead")
	return app.MaintenanceConfig{Off: interval == 0, Interval: interval, Retention: common.Retention}
}

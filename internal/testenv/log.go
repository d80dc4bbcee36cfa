package testenv

import (
	"log/slog"
	"os"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Logger returns the logger for in-process workers: quiet unless
// ORDERPIPE_TEST_LOG=1, when it writes JSON to stderr.
func Logger() *slog.Logger {
	if os.Getenv("ORDERPIPE_TEST_LOG") == "1" {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return discardLogger()
}

// Command worker consumes the order queues and runs the billing,
// notification and inventory handlers. Configuration comes from environment
// variables: `worker -h` lists them; `worker --version` prints the version
// and build information without reading any.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orderpipe/orderpipe/cmd/internal/buildinfo"
	"github.com/orderpipe/orderpipe/cmd/internal/workerenv"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/tracing"
)

// version is stamped by the build: -ldflags "-X main.version=...".
var version string

func main() { os.Exit(workerMain(os.Args[1:])) }

// workerMain is the worker's main. It returns the exit code: 0, 1 when the worker
// failed, 2 for a configuration it refused.
func workerMain(args []string) int {
	arg := ""
	if len(args) > 0 {
		arg = args[0]
	}
	// Before any variable is read: the version needs no configuration.
	if buildinfo.Requested(arg) {
		fmt.Fprint(os.Stdout, buildinfo.String("worker", version))
		return 0
	}
	w := workerenv.Load(os.LookupEnv)
	switch arg {
	case "-h", "--help", "help":
		fmt.Fprintln(os.Stderr, "usage: worker [healthcheck | --version]\n\nConsumes the order queues. `worker healthcheck` exits 0 if the worker\nin this container answers /healthz (for the ECS container health check).\n`worker --version` prints the version and the build information.\n\nEnvironment variables:")
		w.Env.Usage(os.Stderr)
		return 0
	case "healthcheck":
		return healthcheck(w.App.MetricsAddr)
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: w.Level}))
	redisstore.RouteRedisLog(log)
	tracing.RouteErrors(log)
	w.App.Logger = log
	ctx, stop := signalContext(log)
	defer stop()
	if err := w.Check(ctx); err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	log.Info("configuration", append(w.Env.Effective(), "gc_percent", workerenv.TuneGC(os.LookupEnv))...)
	w.Tracing.ServiceVersion, w.Tracing.Logger = buildinfo.Version(version), log
	tp, stopTracing, err := tracing.Start(w.Tracing)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	defer stopTracing() // after the drain: the last spans go out, within tracing.ShutdownTimeout
	w.App.TracerProvider = tp
	if err := app.Run(ctx, w.App); err != nil {
		log.Error("worker failed", "err", err)
		return 1
	}
	return 0
}

// signalContext is cancelled by the first SIGTERM or SIGINT (drain); a second
// one exits at once.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-ch
		log.Info("signal received: draining", "signal", s.String())
		cancel()
		s = <-ch
		log.Warn("second signal: stopping now", "signal", s.String())
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// healthcheck asks the worker in this container for /healthz: the ECS
// container health check (the distroless image has no curl).
func healthcheck(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		fmt.Fprintln(os.Stderr, "healthcheck: METRICS_ADDR has no port:", addr)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck: /healthz answered", resp.Status)
		return 1
	}
	return 0
}

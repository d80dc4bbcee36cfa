package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// workerReady is what the worker logs once its consumers run, and
// workerServing what it logs once it serves /metrics (before it is ready).
const (
	workerReady   = `"worker started"`
	workerServing = "serving /metrics, /healthz and /readyz"
)

// WorkerProc is a worker running as a process of its own, as in production.
type WorkerProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// StartWorker starts argv with env, its output appended to logPath, and
// waits until it logs that it started.
func StartWorker(ctx context.Context, argv, env []string, logPath string) (*WorkerProc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bench: worker log: %w", err)
	}
	// The worker writes its log through its own descriptor; ours is never
	// written, so a failure to close it loses nothing.
	defer func() { _ = f.Close() }()
	// Stop ends the worker, not ctx: a cancelled benchmark still drains it.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", argv[0], err)
	}
	w := &WorkerProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { w.err = cmd.Wait(); close(w.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, _ := os.ReadFile(logPath); bytes.Contains(b, []byte(workerReady)) {
			return w, nil
		}
		select {
		case <-w.done:
			return nil, fmt.Errorf("bench: %s exited before it started (%w); its log ends:\n%s", argv[0], w.err, w.Tail(20))
		case <-ctx.Done():
			_ = w.Stop(5 * time.Second)
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = w.Stop(5 * time.Second)
			return nil, fmt.Errorf("bench: %s did not start within 60s; its log ends:\n%s", argv[0], w.Tail(20))
		}
	}
}

// MetricsAddr is the host:port where the worker serves /metrics, from its
// log, or "" when it serves none.
func (w *WorkerProc) MetricsAddr() string {
	f, err := os.Open(w.logPath)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }() // read only
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == workerServing && rec.Addr != "" {
			return rec.Addr
		}
	}
	return ""
}

// PID is the worker's process id.
func (w *WorkerProc) PID() int { return w.cmd.Process.Pid }

// Stop sends SIGTERM (the worker drains) and waits up to timeout, then kills it.
func (w *WorkerProc) Stop(timeout time.Duration) error {
	select {
	case <-w.done:
		return w.exitErr()
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
		return w.exitErr()
	case <-time.After(timeout):
		_ = w.cmd.Process.Kill()
		<-w.done
		return fmt.Errorf("bench: worker did not stop within %s after SIGTERM; killed", timeout)
	}
}

func (w *WorkerProc) exitErr() error {
	if w.err != nil {
		return fmt.Errorf("bench: worker exited: %w; its log ends:\n%s", w.err, w.Tail(20))
	}
	return nil
}

// Exited reports whether the worker has exited.
func (w *WorkerProc) Exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// Tail returns the last n lines of the worker's log.
func (w *WorkerProc) Tail(n int) string {
	b, err := os.ReadFile(w.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Env returns base with the variables in set replaced (or added).
func Env(base []string, set map[string]string) []string {
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return out
}

// WorkerEnv is the environment of a worker on the benchmark's corner of
// the stack: base (the caller's environment, so WORKER_MAX_IN_FLIGHT,
// DB_MAX_CONNS and the like pass through) pointed at the benchmark's
// database, topology and Redis prefix, through the network profile n,
// without a metrics listener (a pipeline run adds one).
func (s *Stack) WorkerEnv(base []string, n *Net) []string {
	set := map[string]string{
		"DATABASE_URL":          n.DBURL,
		"ORDERPIPE_NAME_PREFIX": s.Cfg.Prefix,
		"REDIS_URL":             n.RedisURL,
		"REDIS_KEY_PREFIX":      s.Cfg.RedisPrefix,
		"SMTP_ADDR":             n.SMTPAddr,
		"METRICS_ADDR":          "",
		"LOG_LEVEL":             "info",
	}
	if endpoint := aws.ToString(n.AWS.BaseEndpoint); endpoint != "" {
		set["AWS_ENDPOINT_URL"] = endpoint
	}
	return Env(base, set)
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/topology"
)

// marker is in every secret below, so that one search finds any of them.
const marker = "Zq9SECRET"

// Distinct secrets, one per place a secret can be configured.
const (
	dbUserinfoSecret = marker + "dbuserinfo"
	dbQuerySecret    = marker + "dbquery"
	dbHashSecret     = "pa#" + marker + "dbhash" // net/url cannot parse a URL with it; pgx can
	redisSecret      = marker + "redis"
	smtpSecret       = marker + "smtp"
	awsKeySecret     = marker + "awssecretkey"
	awsTokenSecret   = marker + "awssessiontoken"
)

// TestNoSecretReachesAnyOutput runs the real binaries with a secret in
// every variable that can hold one and looks for the secrets in all they
// print: the worker's start-up log while it runs and drains, its refusal of
// invalid configurations, `worker -h`, the /readyz body and orderctl's
// errors. The local PgBouncer trusts every client, so a password in
// DATABASE_URL is accepted (and never asked for).
func TestNoSecretReachesAnyOutput(t *testing.T) {
	env := testenv.Open(t, "cmd_worker")
	top, _ := env.Topology(t)
	prefix := strings.TrimSuffix(top.Topic, topology.Default().Topic)
	workerBin, orderctlBin := buildBinaries(t)

	dbURL := strings.Replace(env.DBURL, "postgres@", "postgres:"+dbUserinfoSecret+"@", 1) + "&password=" + dbQuerySecret
	hashURL := strings.Replace(env.DBURL, "postgres@", "postgres:"+dbHashSecret+"@", 1)
	if !strings.Contains(env.DBURL, "postgres@") || !strings.Contains(env.DBURL, "?") {
		t.Fatalf("DATABASE_URL %q: want postgres@ and a query, to add the secrets to", env.DBURL)
	}
	base := []string{
		"AWS_ENDPOINT_URL=" + testenv.Endpoint, "AWS_REGION=" + testenv.Region,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=" + awsKeySecret, "AWS_SESSION_TOKEN=" + awsTokenSecret,
		"ORDERPIPE_NAME_PREFIX=" + prefix, "REDIS_KEY_PREFIX=orderpipe-test:" + prefix,
		"REDIS_URL=" + strings.Replace(testenv.RedisURL, "redis://", "redis://default:"+redisSecret+"@", 1),
		"SMTP_ADDR=" + testenv.SMTPAddr, "SMTP_PASSWORD=" + smtpSecret,
		"DB_MAX_CONNS=4", "WORKER_WAIT_TIME=1s", "WORKER_SHUTDOWN_TIMEOUT=5s", "LOG_LEVEL=debug",
	}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }

	t.Run("worker start-up log, /readyz and drain", func(t *testing.T) {
		for name, url := range map[string]string{"user-info and query password": dbURL, "password with #": hashURL} {
			t.Run(name, func(t *testing.T) {
				out, body := runWorker(t, workerBin, with("DATABASE_URL="+url, "METRICS_ADDR=127.0.0.1:0"))
				assertNoSecret(t, "worker output", out)
				assertNoSecret(t, "/readyz", body)
				if !strings.Contains(body, `"ready":true`) {
					t.Errorf("/readyz = %s, want ready (the secrets are accepted where they are credentials)", body)
				}
			})
		}
	})

	t.Run("worker refusing invalid configurations", func(t *testing.T) {
		for name, tt := range map[string]struct {
			env      []string
			wantCode int
		}{
			"a bad variable":                {with("DATABASE_URL="+dbURL, "DB_MAX_CONNS=lots"), 2},
			"IAM with a password":           {with("DATABASE_URL="+dbURL, "DB_IAM_AUTH=true"), 2},
			"IAM with a # password":         {with("DATABASE_URL="+hashURL, "DB_IAM_AUTH=true"), 2},
			"repeated sslmode":              {with("DATABASE_URL="+dbURL+"&sslmode=verify-full", "DB_PROXY=rds-proxy"), 2},
			"a # password behind rds-proxy": {with("DATABASE_URL="+hashURL, "DB_PROXY=rds-proxy"), 2},
			"a short lease":                 {with("DATABASE_URL="+dbURL, "IDEMPOTENCY_LEASE=1ns"), 2},
			"an unparsable REDIS_URL":       {with("DATABASE_URL="+dbURL, "REDIS_URL=redis://default:a%zz"+redisSecret+"@127.0.0.1:6379/0"), 1},
		} {
			t.Run(name, func(t *testing.T) {
				out, code := run(t, workerBin, tt.env)
				if code != tt.wantCode {
					t.Errorf("exit code %d, want %d; output:\n%s", code, tt.wantCode, out)
				}
				assertNoSecret(t, "worker output", out)
			})
		}
	})

	t.Run("worker -h", func(t *testing.T) {
		out, code := run(t, workerBin, with("DATABASE_URL="+dbURL), "-h")
		if code != 0 || !strings.Contains(out, "DATABASE_URL") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
		assertNoSecret(t, "worker -h", out)
	})

	t.Run("orderctl errors", func(t *testing.T) {
		unreachable := "postgres://postgres:" + dbUserinfoSecret + "@127.0.0.1:1/orderpipe?sslmode=disable&password=" + dbQuerySecret
		for name, args := range map[string]struct {
			env  []string
			args []string
		}{
			"a bad variable":          {with("DATABASE_URL="+dbURL, "DB_MAX_CONNS=lots"), []string{"report"}},
			"an unreachable DB":       {with("DATABASE_URL="+unreachable, "DB_MAX_CONNS=1"), []string{"migrate"}},
			"IAM with a password":     {with("DATABASE_URL="+hashURL, "DB_IAM_AUTH=true"), []string{"migrate"}},
			"repeated sslmode":        {with("DATABASE_URL=" + dbURL + "&sslmode=require"), []string{"report"}},
			"an unknown command":      {with("DATABASE_URL=" + dbURL), []string{"nosuchcommand"}},
			"a bad flag":              {with("DATABASE_URL=" + hashURL), []string{"publish", "--sample", "x"}},
			"an unparsable REDIS_URL": {with("DATABASE_URL="+dbURL, "REDIS_URL=redis://default:a%zz"+redisSecret+"@127.0.0.1:6379/0"), []string{"product", "NOSUCHSKU", "--price", "1"}},
		} {
			t.Run(name, func(t *testing.T) {
				out, code := run(t, orderctlBin, args.env, args.args...)
				if code == 0 {
					t.Errorf("exit 0, want an error; output:\n%s", out)
				}
				assertNoSecret(t, "orderctl output", out)
			})
		}
	})
}

func assertNoSecret(t *testing.T, what, out string) {
	t.Helper()
	if i := strings.Index(out, marker); i >= 0 {
		t.Errorf("%s holds a secret at byte %d: ...%s...", what, i, out[max(0, i-80):min(len(out), i+40)])
	}
	if strings.Contains(out, strings.TrimPrefix(dbHashSecret, "pa#")) {
		t.Errorf("%s holds part of the # password", what)
	}
}

// buildBinaries builds cmd/worker and cmd/orderctl, as the lifecycle tests
// do: what ships is what is tested.
func buildBinaries(t *testing.T) (worker, orderctl string) {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.CommandContext(t.Context(), "go", "build", "-o", dir+string(filepath.Separator),
		"github.com/orderpipe/orderpipe/cmd/worker", "github.com/orderpipe/orderpipe/cmd/orderctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "worker"), filepath.Join(dir, "orderctl")
}

// childEnv is the test's environment without anything the child should not
// inherit, plus vars (which win).
func childEnv(vars []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "DB_") || strings.HasPrefix(k, "PG") ||
			k == "DATABASE_URL" || k == "REDIS_URL" || strings.HasPrefix(k, "SMTP_") || strings.HasPrefix(k, "WORKER_") || k == "METRICS_ADDR" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, vars...)
}

// run runs a binary to its end (within a minute) and returns its combined
// output and exit code.
func run(t *testing.T, bin string, vars []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(vars)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("%s: %v\n%s", bin, err, out)
	return "", 0
}

// runWorker starts the worker, waits for it to serve /readyz and to start
// its consumers, reads /readyz, sends SIGTERM and waits for it to drain.
// It returns everything the worker printed and the /readyz body.
func runWorker(t *testing.T, bin string, vars []string) (output, readyz string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Env = childEnv(vars)
	var out safeBuffer
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addr, started := make(chan string, 1), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = out.Write([]byte(string(line) + "\n")) // a bytes.Buffer: never fails
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &rec) != nil {
				continue
			}
			switch rec.Msg {
			case "serving /metrics, /healthz and /readyz":
				addr <- rec.Addr
			case "worker started":
				close(started)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.After(45 * time.Second)
	var a string
	select {
	case a = <-addr:
	case err := <-exited:
		t.Fatalf("worker exited before serving /readyz: %v\n%s", err, out.String())
	case <-deadline:
		t.Fatalf("worker did not serve /readyz within 45s:\n%s", out.String())
	}
	select {
	case <-started:
	case err := <-exited:
		t.Fatalf("worker exited before starting: %v\n%s", err, out.String())
	case <-deadline:
		t.Fatalf("worker did not start within 45s:\n%s", out.String())
	}
	readyz = getReadyz(t, a)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("worker exited with %v after SIGTERM, want 0:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("worker did not exit within 30s of SIGTERM:\n%s", out.String())
	}
	return out.String(), readyz
}

// getReadyz polls /readyz until it answers ready or 20s pass, and returns
// the last body.
func getReadyz(t *testing.T, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var body string
	testenv.Eventually(t, 20*time.Second, func() error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		body = string(b)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s %s", resp.Status, b)
		}
		return nil
	})
	return body
}

// safeBuffer is a bytes.Buffer for two writers (stderr and the stdout scanner).
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

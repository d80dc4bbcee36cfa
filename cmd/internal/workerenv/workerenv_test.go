package workerenv

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/orderpipe/orderpipe/deploy"
	"github.com/orderpipe/orderpipe/store"
)

// lookupMap is an env.LookupFunc over a map.
func lookupMap(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
}

// hermeticAWS empties the process environment of what the AWS SDK (which
// reads the process environment, not Load's lookup) and pgx would pick up
// from the test's own environment (`scripts/stack.sh env` exports the
// emulator's endpoint and keys), for the duration of the test.
func hermeticAWS(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SNS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_ROLE_ARN", "AWS_EC2_METADATA_DISABLED",
		"PGSSLMODE", "PGSSLROOTCERT", "PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGHOST", "PGPORT", "PGUSER",
	} {
		t.Setenv(k, "") // restores the original when the test ends
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
}

// TestIdempotencyLeaseBelowTheRenewalFloorIsRefused: the renewal ticker
// runs every third of the lease, so a lease under 3ns would panic a
// goroutine, and one under 3 x REDIS_TIMEOUT expires while a renewal is
// still allowed to be in flight.
func TestIdempotencyLeaseBelowTheRenewalFloorIsRefused(t *testing.T) {
	hermeticAWS(t)
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr bool
	}{
		{"1ns", map[string]string{"IDEMPOTENCY_LEASE": "1ns"}, true},
		{"2ns", map[string]string{"IDEMPOTENCY_LEASE": "2ns"}, true},
		{"under a second", map[string]string{"IDEMPOTENCY_LEASE": "999ms", "REDIS_TIMEOUT": "100ms"}, true},
		{"under 3 x REDIS_TIMEOUT", map[string]string{"IDEMPOTENCY_LEASE": "5s", "REDIS_TIMEOUT": "2s"}, true},
		{"3 x REDIS_TIMEOUT", map[string]string{"IDEMPOTENCY_LEASE": "6s", "REDIS_TIMEOUT": "2s"}, false},
		{"the defaults", map[string]string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Load(lookupMap(tt.vars)).Check(context.Background())
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "IDEMPOTENCY_LEASE") {
				t.Fatalf("Check() = %v, want a refusal naming IDEMPOTENCY_LEASE", err)
			}
		})
	}
}

// TestDefaultsGoToAWSNotTheEmulator: with nothing set, the worker talks to
// AWS's own endpoints with the default credential chain; only the SDK's own
// variables point it at an emulator.
func TestDefaultsGoToAWSNotTheEmulator(t *testing.T) {
	hermeticAWS(t)
	w := Load(lookupMap(nil))
	if err := w.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ep := w.App.AWS.BaseEndpoint; ep != nil {
		t.Errorf("BaseEndpoint = %q with nothing set, want none (AWS's own endpoints)", *ep)
	}
	if aws.IsCredentialsProvider(w.App.AWS.Credentials, (*credentials.StaticCredentialsProvider)(nil)) {
		t.Errorf("credentials are a static provider with nothing set, want the default chain")
	}

	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
	w = Load(lookupMap(nil))
	if err := w.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ep := aws.ToString(w.App.AWS.BaseEndpoint); ep != "http://127.0.0.1:4566" {
		t.Errorf("BaseEndpoint = %q with AWS_ENDPOINT_URL set, want the SDK to have read it", ep)
	}
}

// shippedTaskEnvironment is the worker container's environment as ECS
// would start it from deploy/cloudformation in the sample deployment
// (deploy.RenderSample): the template's intrinsic functions evaluated with
// realistic values (the RDS Proxy endpoint, the Redis endpoint), and its
// secrets resolved to what the stack's secrets would hold (REDIS_URL with
// the AUTH token) or sample SES credentials. deploy/ecs/task-definition.json
// is the same rendering.
func shippedTaskEnvironment(t *testing.T) map[string]string {
	t.Helper()
	d, err := deploy.RenderSample()
	if err != nil {
		t.Fatal(err)
	}
	pipeline, err := d.Pipeline()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pipeline.Container(deploy.WorkerTaskDefinition, deploy.WorkerContainer)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := d.SecretValues(c)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	maps.Copy(vars, c.Env)
	for name, v := range secrets {
		if _, dup := vars[name]; dup {
			t.Fatalf("%s is both an environment variable and a secret of the task", name)
		}
		vars[name] = v
	}
	return vars
}

// TestTaskDefinitionPassesTheWorkersCheck feeds the shipped ECS task's
// environment (shippedTaskEnvironment) through the worker's own
// configuration check: the image must be able to start with it. The IAM
// token source is built but must not fetch credentials during the check;
// the test stands in for the ECS credential endpoint and counts.
func TestTaskDefinitionPassesTheWorkersCheck(t *testing.T) {
	hermeticAWS(t)
	vars := shippedTaskEnvironment(t)
	for name, val := range vars {
		if strings.HasPrefix(name, "AWS_ENDPOINT_URL") {
			t.Errorf("the task sets %s=%q; in AWS the SDK's own endpoints are the default", name, val)
		}
	}
	if vars["DB_PROXY"] != store.ProxyRDS || vars["DB_IAM_AUTH"] != "true" {
		t.Fatalf("DB_PROXY=%q DB_IAM_AUTH=%q, want rds-proxy with IAM", vars["DB_PROXY"], vars["DB_IAM_AUTH"])
	}

	var fetches atomic.Int32
	ecsCreds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "example", "Token": "example",
			"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	defer ecsCreds.Close()
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecsCreds.URL+"/v2/credentials")

	ctx := context.Background()
	w := Load(lookupMap(vars))
	if err := w.Check(ctx); err != nil {
		t.Fatalf("the task definition's environment is refused: %v", err)
	}
	if ep := w.App.AWS.BaseEndpoint; ep != nil {
		t.Errorf("BaseEndpoint = %q, want AWS's own", *ep)
	}
	if u, err := url.Parse(w.App.Redis.URL); err != nil || u.Scheme != "rediss" || u.User == nil {
		t.Errorf("REDIS_URL is not rediss:// with the AUTH token: ElastiCache requires both")
	}
	// The alarms' metrics are written, into the namespace the alarms watch.
	if w.App.EMF == nil || w.App.EMF.Namespace != vars["METRICS_EMF_NAMESPACE"] || w.App.EMF.Namespace != "prod-orderpipe" {
		t.Errorf("EMF config %+v: want EMF on, in the sample's prod-orderpipe namespace the alarms watch", w.App.EMF)
	}
	if w.App.Store.IAM == nil || w.App.Store.Proxy != store.ProxyRDS {
		t.Fatalf("store config has IAM %v, proxy %q; want IAM behind rds-proxy", w.App.Store.IAM != nil, w.App.Store.Proxy)
	}
	if n := fetches.Load(); n != 0 {
		t.Fatalf("the check fetched credentials %d times, want none", n)
	}
	pc, err := store.PoolConfig(w.App.Store)
	if err != nil {
		t.Fatal(err)
	}
	if tc := pc.ConnConfig.TLSConfig; tc == nil || tc.InsecureSkipVerify || tc.RootCAs == nil || len(pc.ConnConfig.Fallbacks) != 0 {
		t.Fatalf("TLS config %+v with %d fallbacks, want verify-full against the system roots", tc, len(pc.ConnConfig.Fallbacks))
	}
	// The token source uses the default chain, the task role on ECS.
	token, err := w.App.Store.IAM.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fetches.Load() != 1 || !strings.HasPrefix(token, pc.ConnConfig.Host+":5432") {
		t.Errorf("after one token: %d credential fetches, token for %.40q; want one fetch and a token for the proxy", fetches.Load(), token)
	}
}

// TestEmailClaimShorterThanTheSendIsRefused: a claim that could run out
// while its sender is still sending (or still recording an accepted email)
// lets a second copy go out; the worker refuses it at start, naming both
// variables.
func TestEmailClaimShorterThanTheSendIsRefused(t *testing.T) {
	hermeticAWS(t)
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr bool
	}{
		{"claim at the send timeout", map[string]string{"EMAIL_CLAIM_TTL": "10s", "SMTP_TIMEOUT": "10s"}, true},
		{"claim below send + record + margin", map[string]string{"EMAIL_CLAIM_TTL": "19s", "SMTP_TIMEOUT": "10s"}, true},
		{"a long send with the default claim", map[string]string{"SMTP_TIMEOUT": "2m"}, true},
		{"the shortest claim for a 1s send", map[string]string{"EMAIL_CLAIM_TTL": "11s", "SMTP_TIMEOUT": "1s"}, false},
		{"the defaults", map[string]string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Load(lookupMap(tt.vars)).Check(context.Background())
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "EMAIL_CLAIM_TTL") || !strings.Contains(err.Error(), "SMTP_TIMEOUT") {
				t.Fatalf("Check() = %v, want a refusal naming EMAIL_CLAIM_TTL and SMTP_TIMEOUT", err)
			}
		})
	}
}

// TestEMFIsOffUnlessAskedAndChecked: METRICS_EMF turns the EMF lines on
// (the shipped task does); a namespace CloudWatch would refuse or an
// interval out of bounds stops the worker at start, naming the variable.
func TestEMFIsOffUnlessAskedAndChecked(t *testing.T) {
	hermeticAWS(t)
	tests := []struct {
		name    string
		vars    map[string]string
		on      bool
		wantErr string
	}{
		{"off by default", map[string]string{}, false, ""},
		{"on, the defaults", map[string]string{"METRICS_EMF": "true"}, true, ""},
		{"on, a prefix", map[string]string{"METRICS_EMF": "true", "METRICS_EMF_NAMESPACE": "prod-orderpipe", "METRICS_EMF_INTERVAL": "10s"}, true, ""},
		{"an interval under a second", map[string]string{"METRICS_EMF": "true", "METRICS_EMF_INTERVAL": "500ms"}, true, "METRICS_EMF_INTERVAL"},
		{"an interval over a minute", map[string]string{"METRICS_EMF_INTERVAL": "5m"}, false, "METRICS_EMF_INTERVAL"},
		{"AWS's namespace", map[string]string{"METRICS_EMF": "true", "METRICS_EMF_NAMESPACE": "AWS/SQS"}, true, "METRICS_EMF_NAMESPACE"},
		{"an empty namespace", map[string]string{"METRICS_EMF": "true", "METRICS_EMF_NAMESPACE": ""}, true, "METRICS_EMF_NAMESPACE"},
		{"not a boolean", map[string]string{"METRICS_EMF": "sometimes"}, false, "METRICS_EMF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := Load(lookupMap(tt.vars))
			err := w.Check(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr+"=") && !strings.Contains(err.Error(), tt.wantErr+":") {
					t.Fatalf("Check() = %v, want a refusal naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if (w.App.EMF != nil) != tt.on {
				t.Fatalf("EMF config %+v, want on %v", w.App.EMF, tt.on)
			}
			if tt.on && w.App.EMF.Namespace != cmp.Or(tt.vars["METRICS_EMF_NAMESPACE"], "orderpipe") {
				t.Errorf("namespace %q", w.App.EMF.Namespace)
			}
		})
	}
}

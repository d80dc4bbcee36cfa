package workerenv

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/orderpipe/orderpipe/cmd/internal/env"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/worker"
)

// Function is a Lambda function's configuration (cmd/lambda): the worker's
// variables (Load), read and checked the same way, and the function's own.
type Function struct {
	*Config

	// Handler is ORDERPIPE_HANDLER: the one handler the function runs.
	Handler string
	// Batch bounds an invocation (FUNCTION_*).
	Batch worker.BatchConfig
	// RedisURLSecretID and SMTPSecretID, when set, name Secrets Manager
	// secrets that hold REDIS_URL and the SMTP login, read once when the
	// environment starts (ResolveSecrets): Lambda has no secrets in its
	// environment as ECS has.
	RedisURLSecretID, SMTPSecretID string
}

// FunctionMaxConnsDefault is DB_MAX_CONNS in a function: each execution
// environment handles one batch at a time, and RDS Proxy multiplexes the
// environments.
const FunctionMaxConnsDefault = 2

// LoadFunction reads the function's variables through lookup.
func LoadFunction(lookup env.LookupFunc) *Function {
	if lookup == nil {
		panic("workerenv: LoadFunction needs a lookup") // a programmer error
	}
	c := Load(func(name string) (string, bool) {
		if v, ok := lookup(name); ok || name != "DB_MAX_CONNS" {
			return v, ok
		}
		return strconv.Itoa(FunctionMaxConnsDefault), true
	})
	e := c.Env
	f := &Function{Config: c}
	f.Handler = e.String("ORDERPIPE_HANDLER", "", "the handler this function runs: billing, notification or inventory (required)")
	if !slices.Contains(c.App.Topology.Handlers(), f.Handler) {
		e.Failf("ORDERPIPE_HANDLER", "%q is not one of %v", f.Handler, c.App.Topology.Handlers())
	}
	f.Batch = worker.BatchConfig{
		Config:       worker.Config{MaxInFlight: e.Int("FUNCTION_MAX_IN_FLIGHT", 10, 1, 10000, "records of one batch handled at once")},
		StartMargin:  e.Duration("FUNCTION_START_MARGIN", worker.StartMarginDefault, "a record is not started with less than this left of the invocation (it is failed and comes back at once)"),
		SettleMargin: e.Duration("FUNCTION_SETTLE_MARGIN", worker.SettleMarginDefault, "a record's handler is cut this long before the invocation's deadline, to settle it (less than FUNCTION_START_MARGIN)"),
		GateWait:     e.Duration("FUNCTION_BREAKER_WAIT", worker.GateWaitDefault, "how long an invocation waits for an open circuit breaker before it fails its batch (each record delayed by the retry policy)"),
	}
	if f.Batch.SettleMargin >= f.Batch.StartMargin {
		e.Failf("FUNCTION_SETTLE_MARGIN", "%s must be shorter than FUNCTION_START_MARGIN (%s)", f.Batch.SettleMargin, f.Batch.StartMargin)
	}
	f.RedisURLSecretID = e.String("REDIS_URL_SECRET_ID", "", "name or ARN of a Secrets Manager secret whose string is REDIS_URL (with its AUTH token), read when the environment starts; overrides REDIS_URL")
	f.SMTPSecretID = e.String("SMTP_SECRET_ID", "", `name or ARN of a Secrets Manager secret {"username": ..., "password": ...}: the SMTP login, read when the environment starts; overrides SMTP_USERNAME and SMTP_PASSWORD`)
	return f
}

// Check refuses a configuration the function could not run with, as the
// worker's Check does; it contacts nothing.
func (f *Function) Check(ctx context.Context) error { return f.Config.Check(ctx) }

// App is the function's app configuration.
func (f *Function) App() app.FunctionConfig {
	return app.FunctionConfig{App: f.Config.App, Handler: f.Handler, Batch: f.Batch}
}

// ResolveSecrets reads REDIS_URL_SECRET_ID and SMTP_SECRET_ID into the
// configuration, once, when the environment starts. Errors name the
// variable and the secret, never a value.
func (f *Function) ResolveSecrets(ctx context.Context) error {
	if f.RedisURLSecretID == "" && f.SMTPSecretID == "" {
		return nil
	}
	sm := secretsmanager.NewFromConfig(f.Config.App.AWS)
	if f.RedisURLSecretID != "" {
		v, err := secretString(ctx, sm, "REDIS_URL_SECRET_ID", f.RedisURLSecretID)
		if err != nil {
			return err
		}
		f.Config.App.Redis.URL = v
	}
	if f.SMTPSecretID != "" {
		v, err := secretString(ctx, sm, "SMTP_SECRET_ID", f.SMTPSecretID)
		if err != nil {
			return err
		}
		var login struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}
		if json.Unmarshal([]byte(v), &login) != nil || login.Username == "" || login.Password == "" {
			return fmt.Errorf("SMTP_SECRET_ID: secret %s is not JSON with a username and a password", f.SMTPSecretID)
		}
		f.Config.App.SMTP.Username, f.Config.App.SMTP.Password = login.Username, login.Password
	}
	return nil
}

func secretString(ctx context.Context, sm *secretsmanager.Client, variable, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, store.SecretFetchTimeout)
	defer cancel()
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return "", fmt.Errorf("%s: read secret %s: %w", variable, id, err)
	}
	if aws.ToString(out.SecretString) == "" {
		return "", fmt.Errorf("%s: secret %s holds no string", variable, id)
	}
	return *out.SecretString, nil
}

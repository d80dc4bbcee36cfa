package lambdaharness_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/internal/lambdaharness"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
)

// motoSecrets is a Secrets Manager client of moto's server at MOTO_URL (as
// `scripts/stack.sh env` exports it), every call within 10 s.
func motoSecrets(t *testing.T) *secretsmanager.Client {
	t.Helper()
	endpoint := os.Getenv("MOTO_URL")
	if endpoint == "" {
		endpoint = "http://127.0.0.1:5000"
	}
	return secretsmanager.NewFromConfig(aws.Config{
		Region: testenv.Region, BaseEndpoint: aws.String(endpoint), HTTPClient: &http.Client{Timeout: 10 * time.Second},
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

func randomPassword(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "pw-" + hex.EncodeToString(b)
}

// rdsSecret is an RDS database secret's JSON, as RDS's rotation writes it.
func rdsSecret(port int, user, password string) string {
	return fmt.Sprintf(`{"engine":"postgres","host":"127.0.0.1","port":%d,"dbname":"orderpipe","username":%q,"password":%q}`, port, user, password)
}

// TestPasswordRotationUnderLoad rotates the functions' database password
// mid-run, under 20 orders a second, as RDS's single-user rotation does:
// the password changes in PostgreSQL first (setSecret), and the secret in
// Secrets Manager (moto's server) only 1.5 s after the database first
// refused the old password (finishSecret): meanwhile the functions read
// the secret again and find the old password still there. The functions log in with DB_SECRET_ID's
// credentials, each environment with its own cache, and their connections
// retire every 300 ms, so new logins run all along.
//
// PostgreSQL's log proves the refusals (28P01: "password authentication
// failed"); every environment that met one read the secret again and logs
// once that its credentials were refreshed; 0 orders lost, 0 duplicated,
// 0 dead-lettered; neither password appears in any log line.
func TestPasswordRotationUnderLoad(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	db := pg.Orderpipe(t, "orderpipe")
	const role = "orderpipe_fn"
	old, rotated := randomPassword(t), randomPassword(t)
	pg.Exec(t, "orderpipe",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, old),
		"GRANT ALL ON ALL TABLES IN SCHEMA public TO "+role,
		"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "+role)
	s := newStack(t)
	s.addProducts(t, db, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 100000})

	sm := motoSecrets(t)
	secretID := "orderpipe-test/" + s.prefix + "db"
	ctx := context.Background()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(secretID), SecretString: aws.String(rdsSecret(pg.Port, role, old))}); err != nil {
		t.Fatalf("create the secret in moto (run `make up`): %v", err)
	}
	t.Cleanup(func() {
		_, _ = sm.DeleteSecret(context.Background(), &secretsmanager.DeleteSecretInput{SecretId: aws.String(secretID), ForceDeleteWithoutRecovery: aws.Bool(true)})
	})
	_, logged := s.startFunctions(t, func(c *lambdaharness.PipelineConfig) {
		c.Function.App.Store = store.Config{
			URL: fmt.Sprintf("postgres://orderpipe@127.0.0.1:%d/orderpipe?sslmode=disable", pg.Port), Proxy: store.ProxyNone, MaxConns: 2,
			MaxConnLifetime: 300 * time.Millisecond, Secret: store.NewSecretCredentials(sm, secretID),
		}
	})
	stop := s.load(t, "r", 20)
	waitCount(t, db, s, 20)

	refused := `password authentication failed for user "` + role + `"`
	pg.Exec(t, "postgres", fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", role, rotated))
	t.Logf("password changed in PostgreSQL at %d invoices", countInvoices(t, db, s))
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(pg.LogLines(t, refused)) == 0 {
			return errors.New("no login refused yet")
		}
		return nil
	})
	// The rotation's window: RDS's rotation function tests the new
	// password (testSecret) before it moves AWSCURRENT (finishSecret).
	time.Sleep(1500 * time.Millisecond)
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(secretID), SecretString: aws.String(rdsSecret(pg.Port, role, rotated))}); err != nil {
		t.Fatal(err)
	}
	t.Logf("secret rotated after %d refused logins", len(pg.LogLines(t, refused)))
	waitCount(t, db, s, countInvoices(t, db, s)+40)
	n := stop()
	s.exactlyOnce(t, db, n)

	refusals := pg.LogLines(t, refused)
	refreshed := logged.lines("database credentials refreshed")
	byEnv := map[string]int{}
	for _, l := range refreshed {
		_, env, ok := strings.Cut(l, `"environment":"`)
		if !ok {
			t.Fatalf("a refresh line names no environment: %s", l)
		}
		byEnv[env[:strings.IndexByte(env, '"')]]++
	}
	if len(refusals) == 0 || len(refreshed) == 0 {
		t.Fatalf("%d logins refused, %d refreshes logged; want both > 0", len(refusals), len(refreshed))
	}
	for env, n := range byEnv {
		if n != 1 {
			t.Errorf("environment %s logged the refresh %d times, want once", env, n)
		}
	}
	all := string(logged.bytes())
	if strings.Contains(all, old) || strings.Contains(all, rotated) {
		t.Error("a password appears in the functions' log")
	}
	t.Logf("%d orders; %d logins refused by PostgreSQL; %d log lines of the functions name SQLSTATE 28P01; refreshed once in each of %d environments: %s",
		n, len(refusals), len(logged.lines("28P01")), len(byEnv), refreshed[0])
}

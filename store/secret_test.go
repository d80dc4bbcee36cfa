package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5/pgconn"
)

// fakeSecrets is a Secrets Manager holding one secret string.
type fakeSecrets struct {
	mu      sync.Mutex
	value   string
	version int
	calls   int
	err     error
}

func (f *fakeSecrets) put(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.value = v
	f.version++
}

func (f *fakeSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return &secretsmanager.GetSecretValueOutput{Name: in.SecretId, SecretString: aws.String(f.value), VersionId: aws.String(fmt.Sprintf("v%d", f.version))}, nil
}

func rdsJSON(user, password string) string {
	return fmt.Sprintf(`{"engine":"postgres","host":"db.example.internal","port":5432,"dbname":"orderpipe","username":%q,"password":%q}`, user, password)
}

// TestSecretIsReadOnceThenAgainOnlyAfterARefusal: the credentials are read
// at the first connection and cached; a refusal reads them again, a burst
// of refusals within RefetchEvery once, and only a changed secret counts
// as a change.
func TestSecretIsReadOnceThenAgainOnlyAfterARefusal(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	f := &fakeSecrets{}
	f.put(rdsJSON("orderpipe", "first-pass"))
	s := NewSecretCredentials(f, "orderpipe/db")
	s.now = func() time.Time { return now }
	ctx := context.Background()
	for range 3 {
		user, pw, err := s.Credentials(ctx)
		if err != nil || user != "orderpipe" || pw != "first-pass" {
			t.Fatalf("Credentials = %q, %q, %v", user, pw, err)
		}
	}
	if f.calls != 1 {
		t.Fatalf("read the secret %d times for three connections, want 1", f.calls)
	}
	// Refused before the rotation finished: the secret still holds the old
	// password. Within RefetchEvery nothing is read again.
	now = now.Add(RefetchEvery)
	if changed, _, err := s.Refetch(ctx); changed || err != nil {
		t.Fatalf("Refetch of an unchanged secret = %v, %v; want no change", changed, err)
	}
	for range 5 {
		if changed, _, _ := s.Refetch(ctx); changed {
			t.Fatal("a burst of refusals changed the credentials")
		}
	}
	if f.calls != 2 {
		t.Fatalf("read the secret %d times, want 2 (one for the burst)", f.calls)
	}
	f.put(rdsJSON("orderpipe", "second-pass"))
	now = now.Add(RefetchEvery)
	changed, version, err := s.Refetch(ctx)
	if !changed || err != nil || version != "v2" {
		t.Fatalf("Refetch after the rotation = %v, %q, %v; want a change to v2", changed, version, err)
	}
	if _, pw, _ := s.Credentials(ctx); pw != "second-pass" {
		t.Fatalf("the cached password is not the rotated one")
	}
}

// TestSecretErrorsNameTheSecretNeverItsValue: a secret that is not an RDS
// secret, or lacks a key, is refused by name; the error never quotes what
// the secret holds.
func TestSecretErrorsNameTheSecretNeverItsValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value, want string }{
		{"not JSON", "hunter2-not-json", "is not the JSON of an RDS secret"},
		{"no password", `{"username":"orderpipe","pass":"hunter2-wrong-key"}`, "has no username or no password"},
		{"no username", `{"password":"hunter2-no-user"}`, "has no username or no password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeSecrets{}
			f.put(tc.value)
			_, _, err := NewSecretCredentials(f, "orderpipe/db").Credentials(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "orderpipe/db") {
				t.Fatalf("err = %v, want it to name the secret and say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error quotes the secret's value: %v", err)
			}
		})
	}
	f := &fakeSecrets{err: errors.New("AccessDeniedException: not allowed")}
	if _, _, err := NewSecretCredentials(f, "orderpipe/db").Credentials(context.Background()); err == nil || !strings.Contains(err.Error(), "DB_SECRET_ID") {
		t.Fatalf("a failed read = %v, want an error naming DB_SECRET_ID", err)
	}
}

func TestCredentialsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"a connect error without a SQLSTATE", &pgconn.ConnectError{}, false},
		{"28P01", fmt.Errorf("acquire: %w", &pgconn.PgError{Code: "28P01"}), true},
		{"28000", &pgconn.PgError{Code: "28000"}, true},
		{"08P01 (PgBouncer's protocol errors)", &pgconn.PgError{Code: "08P01"}, false},
		{"not a database error", errors.New("boom"), false},
	} {
		if got := CredentialsRefused(tc.err); got != tc.want {
			t.Errorf("%s: CredentialsRefused = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestPoolConfigTakesTheLoginFromTheSecret: the hook gives every new
// connection the secret's user and password; a password from elsewhere or
// IAM beside the secret is refused.
func TestPoolConfigTakesTheLoginFromTheSecret(t *testing.T) {
	t.Parallel()
	f := &fakeSecrets{}
	f.put(rdsJSON("orderpipe_fn", "s3cret-pass"))
	secret := NewSecretCredentials(f, "orderpipe/db")
	pc, err := PoolConfig(Config{URL: "postgres://placeholder@db.example.internal:5432/orderpipe?sslmode=disable", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	cc := pc.ConnConfig.Copy()
	if err := pc.BeforeConnect(context.Background(), cc); err != nil {
		t.Fatal(err)
	}
	if cc.User != "orderpipe_fn" || cc.Password != "s3cret-pass" {
		t.Errorf("connection login = %q / %q, want the secret's", cc.User, cc.Password)
	}
	iam := NewIAMTokens("db.example.internal:5432", "us-east-1", "orderpipe", credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""))
	for name, cfg := range map[string]Config{
		"a password in the URL": {URL: "postgres://u:pw@db.example.internal:5432/orderpipe?sslmode=disable", Secret: secret},
		"IAM too":               {URL: "postgres://orderpipe@db.example.internal:5432/orderpipe?sslmode=verify-full&sslrootcert=system", Secret: secret, IAM: iam},
	} {
		if _, err := PoolConfig(cfg); err == nil || !strings.Contains(err.Error(), "DB_SECRET_ID") {
			t.Errorf("%s: PoolConfig = %v, want a refusal naming DB_SECRET_ID", name, err)
		}
	}
}

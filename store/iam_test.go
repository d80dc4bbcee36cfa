package store

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

func TestIAMTokenIsAnRDSConnectToken(t *testing.T) {
	creds := credentials.NewStaticCredentialsProvider("AKIAEXAMPLE", "secretkey", "")
	s := NewIAMTokens("proxy.example.internal:5432", "eu-west-1", "orderpipe_worker", creds)
	token, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "proxy.example.internal:5432?") && !strings.HasPrefix(token, "proxy.example.internal:5432/?") {
		t.Fatalf("token %q does not start with the endpoint host:port", token)
	}
	u, err := url.Parse("https://" + token)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, want := range map[string]string{
		"Action":              "connect",
		"DBUser":              "orderpipe_worker",
		"X-Amz-Expires":       "900",
		"X-Amz-Algorithm":     "AWS4-HMAC-SHA256",
		"X-Amz-SignedHeaders": "host",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if c := q.Get("X-Amz-Credential"); !strings.HasPrefix(c, "AKIAEXAMPLE/") || !strings.HasSuffix(c, "/eu-west-1/rds-db/aws4_request") {
		t.Errorf("X-Amz-Credential = %q, want the key, region eu-west-1 and service rds-db", c)
	}
	if q.Get("X-Amz-Signature") == "" {
		t.Error("token is not signed")
	}
	if strings.Contains(token, "secretkey") {
		t.Error("token carries the secret key")
	}
}

func TestIAMTokenReusedThenRenewedBeforeExpiry(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s := NewIAMTokens("db:5432", "us-east-1", "u", credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""))
	s.now = func() time.Time { return now }
	ctx := context.Background()
	first, err := s.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		after     time.Duration
		wantBuild int
	}{
		{time.Second, 1}, // reused
		{TokenLifetime - TokenRenewBefore - time.Second, 1}, // still reused, just before renewal
		{TokenLifetime - TokenRenewBefore, 2},               // renewed 5 minutes before expiry
		{TokenLifetime - TokenRenewBefore + time.Minute, 2},
	}
	base := now
	for _, st := range steps {
		now = base.Add(st.after)
		if _, err := s.Token(ctx); err != nil {
			t.Fatal(err)
		}
		if s.builds != st.wantBuild {
			t.Errorf("after %s: %d tokens built, want %d", st.after, s.builds, st.wantBuild)
		}
	}
	if first == "" {
		t.Error("empty token")
	}
}

func TestIAMTokenRenewedBeforeItsCredentialsExpire(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	expiring := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "ASIA", SecretAccessKey: "S", SessionToken: "T", CanExpire: true, Expires: now.Add(7 * time.Minute)}, nil
	})
	s := NewIAMTokens("db:5432", "us-east-1", "u", expiring)
	s.now = func() time.Time { return now }
	if _, err := s.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := now.Add(2 * time.Minute); !s.renewAt.Equal(want) {
		t.Errorf("renew at %s, want %s (5 minutes before the credentials expire)", s.renewAt, want)
	}
}

package store

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// writeTestCA writes a self-signed CA certificate to path.
func writeTestCA(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "orderpipe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

// TestPoolConfigDecidesTLSFromPgx pins the TLS rules to what pgx will do,
// not to what the URL seems to say: pgx takes the last of a repeated key,
// rewrites ssl=true to sslmode=require, reads ?password= as the password and
// merges PGSSLMODE and PGPASSWORD from the environment. With IAM or behind
// RDS Proxy, anything short of verify-full on every attempt is refused.
func TestPoolConfigDecidesTLSFromPgx(t *testing.T) {
	const secret = "s3cret-in-the-query"
	const host = "proxy.example.internal"
	const base = "postgres://worker@" + host + ":5432/orderpipe"
	iam := NewIAMTokens(host+":5432", "eu-west-1", "worker", credentials.NewStaticCredentialsProvider("A", "S", ""))
	ca := t.TempDir() + "/ca.pem"
	if err := writeTestCA(ca); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		cfg     Config
		wantErr string // substring; "" means accepted, and then verify-full is required of the result when IAM or rds-proxy
	}{
		{name: "a repeated sslmode is refused (pgx would take disable)", cfg: Config{URL: base + "?sslmode=verify-full&sslmode=disable", Proxy: ProxyRDS, IAM: iam}, wantErr: "sslmode more than once"},
		{name: "ssl=true after sslmode is refused (pgx would take require)", cfg: Config{URL: base + "?sslmode=verify-full&ssl=true", IAM: iam}, wantErr: "both ssl and sslmode"},
		{name: "ssl before sslmode is refused too", cfg: Config{URL: base + "?ssl=true&sslmode=verify-full", Proxy: ProxyRDS}, wantErr: "both ssl and sslmode"},
		{name: "a repeated sslrootcert is refused", cfg: Config{URL: base + "?sslmode=verify-full&sslrootcert=system&sslrootcert=/tmp/x.pem", Proxy: ProxyRDS}, wantErr: "sslrootcert more than once"},
		{name: "a percent-encoded repeat is still a repeat", cfg: Config{URL: base + "?sslmode=verify-full&ssl%6dode=disable", Proxy: ProxyRDS}, wantErr: "sslmode more than once"},
		{name: "repeated sslnegotiation is refused", cfg: Config{URL: base + "?sslnegotiation=direct&sslnegotiation=postgres"}, wantErr: "sslnegotiation more than once"},
		{name: "CA file and sslrootcert together are refused", cfg: Config{URL: base + "?sslrootcert=system", Proxy: ProxyRDS, TLSCAFile: "/etc/ca.pem"}, wantErr: "use one"},
		{name: "IAM with ssl=true (require: encrypted, unverified) is refused", cfg: Config{URL: base + "?ssl=true", IAM: iam}, wantErr: "does not verify the server"},
		{name: "IAM with sslmode=require is refused", cfg: Config{URL: base + "?sslmode=require", IAM: iam}, wantErr: "does not verify the server"},
		{name: "IAM with verify-ca is refused (no host name check)", cfg: Config{URL: base + "?sslmode=verify-ca", IAM: iam, TLSCAFile: ca}, wantErr: "not the host name"},
		{name: "IAM with require and a CA file is verify-ca: refused", cfg: Config{URL: base + "?sslmode=require", IAM: iam, TLSCAFile: ca}, wantErr: "not the host name"},
		{name: "IAM with the default prefer is refused (plaintext fallback)", cfg: Config{URL: base, IAM: iam}, wantErr: "plaintext fallback"},
		{name: "IAM with PGSSLMODE=disable from the environment is refused", env: map[string]string{"PGSSLMODE": "disable"}, cfg: Config{URL: base, IAM: iam}, wantErr: "no TLS"},
		{name: "IAM with a password in the query is refused", cfg: Config{URL: base + "?sslmode=verify-full&password=" + secret, IAM: iam}, wantErr: "one or the other"},
		{name: "IAM with PGPASSWORD is refused", env: map[string]string{"PGPASSWORD": secret}, cfg: Config{URL: base + "?sslmode=verify-full", IAM: iam}, wantErr: "one or the other"},
		{name: "IAM with several hosts is refused", cfg: Config{URL: "postgres://worker@" + host + ":5432,other.example.internal:5432/orderpipe?sslmode=verify-full", IAM: iam}, wantErr: "several"},
		{name: "IAM tokens for another user are refused", cfg: Config{URL: "postgres://admin@" + host + ":5432/orderpipe?sslmode=verify-full", IAM: iam}, wantErr: "another host, port or user"},
		{name: "rds-proxy with sslmode=prefer is refused", cfg: Config{URL: base + "?sslmode=prefer", Proxy: ProxyRDS}, wantErr: "plaintext fallback"},
		{name: "rds-proxy with PGSSLMODE=require and a named sslmode=require is refused", env: map[string]string{"PGSSLMODE": "require"}, cfg: Config{URL: base + "?sslmode=require", Proxy: ProxyRDS}, wantErr: "does not verify"},
		{name: "rds-proxy with no TLS named verifies against the system roots", cfg: Config{URL: base, Proxy: ProxyRDS, IAM: iam}},
		{name: "rds-proxy default wins over PGSSLMODE=disable", env: map[string]string{"PGSSLMODE": "disable"}, cfg: Config{URL: base, Proxy: ProxyRDS, IAM: iam}},
		{name: "rds-proxy default appends to an existing query", cfg: Config{URL: base + "?application_name=worker", Proxy: ProxyRDS, IAM: iam}},
		{name: "rds-proxy with sslrootcert=system alone is verify-full", cfg: Config{URL: base + "?sslrootcert=system", Proxy: ProxyRDS, IAM: iam}},
		{name: "IAM with an explicit verify-full is accepted", cfg: Config{URL: base + "?sslmode=verify-full", IAM: iam}},
		{name: "IAM with a CA file is verify-full", cfg: Config{URL: base, IAM: iam, TLSCAFile: ca}},
		{name: "a password with # is read the way pgx reads it", cfg: Config{URL: "postgres://worker:pa#ss@127.0.0.1:6432/orderpipe?sslmode=disable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			pc, err := PoolConfig(tt.cfg)
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("error echoes the secret: %v", err)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.cfg.IAM == nil && tt.cfg.Proxy != ProxyRDS {
				return
			}
			cc := pc.ConnConfig
			tc := cc.TLSConfig
			if tc == nil || tc.InsecureSkipVerify || tc.ServerName != host || tc.VerifyPeerCertificate != nil {
				t.Fatalf("TLS config = %+v, want the chain and host name verified by crypto/tls", tc)
			}
			if strings.Contains(tt.name, "system roots") && tc.RootCAs == nil {
				t.Errorf("no root pool, want the system roots loaded (sslrootcert=system)")
			}
			for i, fb := range cc.Fallbacks {
				if fb.TLSConfig == nil || fb.TLSConfig.InsecureSkipVerify {
					t.Errorf("fallback %d has TLS %+v, want verify-full on every attempt", i, fb.TLSConfig)
				}
			}
			if cc.Password != "" {
				t.Errorf("password set before BeforeConnect: the IAM token must be the only one")
			}
		})
	}
}

// TestPoolConfigReadsPasswordsAsPgxDoes: the password pgx will send decides,
// wherever the URL hides it.
func TestPoolConfigReadsPasswordsAsPgxDoes(t *testing.T) {
	pc, err := PoolConfig(Config{URL: "postgres://worker:pa#ss@127.0.0.1:6432/orderpipe?sslmode=disable"})
	if err != nil {
		t.Fatal(err)
	}
	if got := pc.ConnConfig.Password; got != "pa#ss" {
		t.Errorf("password = %q, want pa#ss", got)
	}
}

func TestIAMTarget(t *testing.T) {
	tests := []struct{ name, url, endpoint, user, wantErr string }{
		{"plain", "postgres://worker@proxy.example.internal:5432/db", "proxy.example.internal:5432", "worker", ""},
		{"query wins over the path", "postgres://worker@proxy.example.internal:5432/db?user=other&port=6543", "proxy.example.internal:6543", "other", ""},
		{"not a URL", "host=proxy user=worker", "", "", "postgres:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint, user, err := IAMTarget(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || endpoint != tt.endpoint || user != tt.user {
				t.Fatalf("IAMTarget = %q, %q, %v; want %q, %q", endpoint, user, err, tt.endpoint, tt.user)
			}
		})
	}
}

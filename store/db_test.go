package store

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
)

func TestPoolConfigPerProxy(t *testing.T) {
	iam := NewIAMTokens("proxy.example.internal:5432", "us-east-1", "worker", credentials.NewStaticCredentialsProvider("A", "S", ""))
	const local = "postgres://postgres@127.0.0.1:6432/orderpipe?sslmode=disable"
	const rds = "postgres://worker@proxy.example.internal:5432/orderpipe?sslmode=verify-full"
	tests := []struct {
		name     string
		cfg      Config
		wantMode pgx.QueryExecMode
		wantErr  string // substring; "" means accepted
	}{
		{"pgbouncer default is exec", Config{URL: local}, pgx.QueryExecModeExec, ""},
		{"pgbouncer takes the simple protocol", Config{URL: local, StatementMode: "simple_protocol"}, pgx.QueryExecModeSimpleProtocol, ""},
		{"pgbouncer refuses cached statements", Config{URL: local, StatementMode: "cache_statement"}, 0, "PgBouncer in transaction mode"},
		{"pgbouncer refuses cached describes", Config{URL: local, StatementMode: "cache_describe"}, 0, "PgBouncer in transaction mode"},
		{"direct default caches statements", Config{URL: local, Proxy: ProxyNone}, pgx.QueryExecModeCacheStatement, ""},
		{"rds proxy default is the simple protocol", Config{URL: rds, Proxy: ProxyRDS, IAM: iam}, pgx.QueryExecModeSimpleProtocol, ""},
		{"rds proxy refuses exec (pins)", Config{URL: rds, Proxy: ProxyRDS, StatementMode: "exec"}, 0, "pins"},
		{"rds proxy refuses no TLS", Config{URL: local, Proxy: ProxyRDS}, 0, "verify-full"},
		{"CA bundle turns on verify-full", Config{URL: "postgres://worker@proxy:5432/db", Proxy: ProxyRDS, TLSCAFile: "/nonexistent/ca.pem"}, 0, "DB_TLS_CA_FILE"},
		{"IAM and a password are refused", Config{URL: "postgres://worker:pw@proxy.example.internal:5432/db?sslmode=verify-full", IAM: iam}, 0, "one or the other"},
		{"IAM without TLS is refused", Config{URL: "postgres://worker@proxy.example.internal:5432/db?sslmode=disable", IAM: iam}, 0, "needs TLS"},
		{"lifetime must stay under the proxy's timeout", Config{URL: local, ProxyClientTimeout: 10 * time.Minute}, 0, "DB_MAX_CONN_LIFETIME"},
		{"unknown proxy", Config{URL: local, Proxy: "haproxy"}, 0, "unknown proxy"},
		{"not a URL", Config{URL: "host=x"}, 0, "postgres:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := PoolConfig(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if pc.ConnConfig.DefaultQueryExecMode != tt.wantMode {
				t.Errorf("mode = %v, want %v", pc.ConnConfig.DefaultQueryExecMode, tt.wantMode)
			}
			if (tt.cfg.IAM != nil) != (pc.BeforeConnect != nil) {
				t.Errorf("BeforeConnect set = %v, want %v", pc.BeforeConnect != nil, tt.cfg.IAM != nil)
			}
			if pc.MaxConnLifetime != MaxConnLifetimeDefault || pc.MaxConns != MaxConnsDefault {
				t.Errorf("budget = %d conns, lifetime %s; want the defaults", pc.MaxConns, pc.MaxConnLifetime)
			}
		})
	}
}

func TestPoolConfigVerifiesTheServerWithTheCABundle(t *testing.T) {
	ca := t.TempDir() + "/ca.pem"
	if err := writeTestCA(ca); err != nil {
		t.Fatal(err)
	}
	pc, err := PoolConfig(Config{URL: "postgres://worker@proxy.example.internal:5432/db", Proxy: ProxyRDS, TLSCAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	tc := pc.ConnConfig.TLSConfig
	if tc == nil || tc.InsecureSkipVerify || tc.ServerName != "proxy.example.internal" || tc.RootCAs == nil {
		t.Fatalf("TLS config = %+v, want server name verified against the bundle", tc)
	}
	if len(pc.ConnConfig.Fallbacks) != 0 {
		t.Errorf("%d plaintext fallbacks, want none with verify-full", len(pc.ConnConfig.Fallbacks))
	}
}

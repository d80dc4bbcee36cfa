package env

import (
	"strings"
	"testing"
	"time"
)

func TestValidationNamesTheVariable(t *testing.T) {
	t.Setenv("X_INT", "abc")
	t.Setenv("X_DUR", "-1s")
	var e Env
	if got := e.Int("X_INT", 5, 1, 10, "an int"); got != 5 {
		t.Errorf("Int fell back to %d, want the default 5", got)
	}
	e.Duration("X_DUR", time.Second, "a duration")
	err := e.Err()
	if err == nil || !strings.Contains(err.Error(), "X_INT") || !strings.Contains(err.Error(), "X_DUR") {
		t.Fatalf("Err() = %v, want both variables named", err)
	}
}

func TestRedactSecret(t *testing.T) {
	if got := RedactSecret("hunter2"); got != Redacted {
		t.Errorf("RedactSecret = %q, want %q", got, Redacted)
	}
	if got := RedactSecret(""); got != "" {
		t.Errorf("RedactSecret(\"\") = %q, want empty (unset is worth logging)", got)
	}
}

// TestRedactURL: every way pgx or go-redis accepts a password in a URL is
// hidden, and a URL net/url cannot read the way they do is hidden whole.
func TestRedactURL(t *testing.T) {
	const secret = "s3cret"
	tests := []struct{ name, in, want string }{
		{"user-info password", "postgres://app:s3cret@db:5432/x", "postgres://app:redacted@db:5432/x"},
		{"query password (pgx reads it)", "postgres://u@h/db?password=s3cret", "postgres://u@h/db?password=redacted"},
		{"sslpassword", "postgres://u@h/db?sslmode=verify-full&sslpassword=s3cret", "postgres://u@h/db?sslmode=verify-full&sslpassword=redacted"},
		{"encoded key", "postgres://u@h/db?pass%77ord=s3cret", "postgres://u@h/db?pass%77ord=redacted"},
		{"semicolon in a query password (net/url drops the pair, pgx does not)", "postgres://u@h/db?sslmode=disable&password=se;s3cret", "postgres://u@h/db?sslmode=disable&password=redacted"},
		{"both places", "postgres://u:s3cret@h/db?password=s3cret", "postgres://u:redacted@h/db?password=redacted"},
		{"# in the password: net/url fails, pgx reads it", "postgres://u:pa#s3cret@h:5432/db", Redacted},
		{"# in a query password: net/url calls the rest a fragment", "postgres://u@h/db?password=a#s3cret", Redacted},
		{"stray % in the password", "postgres://u:50%s3cret@h:5432/db", Redacted},
		{"? in the password", "postgres://u:a?s3cret@h:5432/db", Redacted},
		{"keyword/value form", "host=h password=s3cret", Redacted},
		{"redis password", "redis://:s3cret@cache:6379/0", "redis://:redacted@cache:6379/0"},
		{"rediss user and password", "rediss://default:s3cret@cache:6379/0", "rediss://default:redacted@cache:6379/0"},
		{"no password", "postgres://app@db:5432/x?sslmode=disable", "postgres://app@db:5432/x?sslmode=disable"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RedactURL(tt.in)
			if got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if strings.Contains(got, secret) {
				t.Errorf("RedactURL(%q) = %q still holds the secret", tt.in, got)
			}
		})
	}
}

// TestEffectiveRedactsByKind: the kind is declared with the variable, not
// guessed from its value.
func TestEffectiveRedactsByKind(t *testing.T) {
	vars := map[string]string{
		"DATABASE_URL":      "postgres://u:pa#s3cret@h:5432/db",
		"REDIS_URL":         "redis://:s3cret@cache:6379/0",
		"SMTP_PASSWORD":     "s3cret",
		"AWS_ENDPOINT_URL":  "http://127.0.0.1:4566",
		"AWS_ACCESS_KEY_ID": "AKIAs3cret",
		"PLAIN":             "30s",
	}
	e := New(func(name string) (string, bool) { v, ok := vars[name]; return v, ok })
	e.URL("DATABASE_URL", "", "")
	e.URL("REDIS_URL", "", "")
	e.Secret("SMTP_PASSWORD", "")
	e.ReadBySDK("AWS_ENDPOINT_URL", "")
	e.ReadBySDK("AWS_ACCESS_KEY_ID", "")
	e.String("PLAIN", "", "")
	got := map[string]any{}
	eff := e.Effective()
	for i := 0; i+1 < len(eff); i += 2 {
		name, nok := eff[i].(string)
		val, vok := eff[i+1].(string)
		if !nok || !vok {
			t.Fatalf("Effective()[%d:%d] = %#v, %#v; want a name and a string value", i, i+2, eff[i], eff[i+1])
		}
		got[name] = val
		if strings.Contains(val, "s3cret") {
			t.Errorf("%s logged as %q", name, val)
		}
	}
	want := map[string]any{"DATABASE_URL": Redacted, "REDIS_URL": "redis://:redacted@cache:6379/0", "SMTP_PASSWORD": Redacted, "PLAIN": "30s"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
	if _, ok := got["AWS_ENDPOINT_URL"]; ok {
		t.Errorf("AWS_ENDPOINT_URL is logged, but only the SDK reads it")
	}
}

func TestEnvReadsThroughLookup(t *testing.T) {
	t.Setenv("X_FROM_PROCESS", "process")
	e := New(func(name string) (string, bool) {
		if name == "X_SET" {
			return "lookup", true
		}
		return "", false
	})
	if got := e.String("X_SET", "def", ""); got != "lookup" {
		t.Errorf("X_SET = %q, want lookup's value", got)
	}
	if got := e.String("X_FROM_PROCESS", "def", ""); got != "def" {
		t.Errorf("X_FROM_PROCESS = %q, want the default: lookup, not the process, decides", got)
	}
}

func TestIdempotencyLeaseFloor(t *testing.T) {
	tests := []struct {
		name                string
		lease, redisTimeout time.Duration
		wantErr             bool
	}{
		{"defaults", 30 * time.Second, 500 * time.Millisecond, false},
		{"1ns would panic the renewal ticker", time.Nanosecond, 500 * time.Millisecond, true},
		{"below 1s", 900 * time.Millisecond, 100 * time.Millisecond, true},
		{"below 3 x REDIS_TIMEOUT", 5 * time.Second, 2 * time.Second, true},
		{"exactly 3 x REDIS_TIMEOUT", 6 * time.Second, 2 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(func(string) (string, bool) { return "", false })
			CheckIdempotencyLease(e, tt.lease, tt.redisTimeout)
			err := e.Err()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Err() = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "IDEMPOTENCY_LEASE") {
				t.Errorf("error %q does not name IDEMPOTENCY_LEASE", err)
			}
		})
	}
}

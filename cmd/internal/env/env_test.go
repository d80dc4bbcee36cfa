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

func TestRedact(t *testing.T) {
	tests := []struct {
		name, in string
		secret   bool
		want     string
	}{
		{"secret", "hunter2", true, "[redacted]"},
		{"empty secret", "", true, ""},
		{"url password", "postgres://app:hunter2@db:5432/x", false, "postgres://app:redacted@db:5432/x"},
		{"url without password", "postgres://app@db:5432/x", false, "postgres://app@db:5432/x"},
		{"plain", "30s", false, "30s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.in, tt.secret); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// Package env reads configuration from environment variables for the
// commands. It records every variable it is asked for, so that `-h` can list
// them all with their defaults and the effective configuration can be logged
// once with secrets redacted. Errors name the variable.
package env

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Var is one documented variable.
type Var struct {
	Name, Default, Help string
	Secret              bool
	value               string
}

// Env collects variables and their errors.
type Env struct {
	vars []*Var
	errs []error
}

func (e *Env) lookup(name, def, help string, secret bool) string {
	v := &Var{Name: name, Default: def, Help: help, Secret: secret}
	e.vars = append(e.vars, v)
	val, ok := os.LookupEnv(name)
	if !ok {
		val = def
	}
	v.value = val
	return val
}

// String returns the variable, or def when it is unset. An empty value is
// kept: it means "off" for the variables that allow it.
func (e *Env) String(name, def, help string) string { return e.lookup(name, def, help, false) }

// Secret is String for values that must never be logged.
func (e *Env) Secret(name, help string) string { return e.lookup(name, "", help, true) }

// Int returns the variable as an integer within [lo, hi].
func (e *Env) Int(name string, def, lo, hi int, help string) int {
	s := e.lookup(name, strconv.Itoa(def), help, false)
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < lo || n > hi {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, s, lo, hi))
		return def
	}
	return n
}

// Duration returns the variable as a positive Go duration ("30s", "2m").
func (e *Env) Duration(name string, def time.Duration, help string) time.Duration {
	s := e.lookup(name, def.String(), help, false)
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a positive duration such as 30s or 2m", name, s))
		return def
	}
	return d
}

// DurationOrOff is Duration that also takes 0 (or empty) for "none".
func (e *Env) DurationOrOff(name string, def time.Duration, help string) time.Duration {
	s := strings.TrimSpace(e.lookup(name, def.String(), help, false))
	if s == "" || s == "0" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a duration such as 30m, or 0 for none", name, s))
		return def
	}
	return d
}

// Bool returns the variable as true/false (also 1/0, on/off, yes/no).
func (e *Env) Bool(name string, def bool, help string) bool {
	d := "false"
	if def {
		d = "true"
	}
	s := e.lookup(name, d, help, false)
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "on", "yes":
		return true
	case "false", "0", "off", "no", "":
		return false
	}
	e.errs = append(e.errs, fmt.Errorf("%s=%q: want true or false", name, s))
	return def
}

// List returns the variable split on commas, blanks dropped.
func (e *Env) List(name, def, help string) []string {
	var out []string
	for _, p := range strings.Split(e.lookup(name, def, help, false), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Fail records a validation error found by the caller.
func (e *Env) Fail(name, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// Set reports whether the variable is set in the environment at all.
func Set(name string) bool { _, ok := os.LookupEnv(name); return ok }

// Err returns every error found, or nil.
func (e *Env) Err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration:\n  %w", errors.Join(e.errs...))
}

// Usage writes every variable with its default and help.
func (e *Env) Usage(w io.Writer) {
	for _, v := range e.vars {
		def := v.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  %s\n        %s (default %s)\n", v.Name, v.Help, def)
	}
}

// Effective returns name/value pairs for logging, with secrets and the
// passwords inside URLs redacted.
func (e *Env) Effective() []any {
	out := make([]any, 0, 2*len(e.vars))
	for _, v := range e.vars {
		out = append(out, v.Name, Redact(v.value, v.Secret))
	}
	return out
}

// Redact hides a secret entirely and a URL's password.
func Redact(val string, secret bool) string {
	if secret {
		if val == "" {
			return ""
		}
		return "[redacted]"
	}
	if u, err := url.Parse(val); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "redacted")
			return u.String()
		}
	}
	return val
}

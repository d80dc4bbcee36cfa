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

// LookupFunc reads one variable: its value and whether it is set at all.
// os.LookupEnv is one; the tests use maps.
type LookupFunc func(name string) (string, bool)

// Kind says how a variable's value is logged.
type Kind int

// Kinds of values, declared with each variable rather than guessed from
// its value.
const (
	Plain  Kind = iota
	Secret      // logged as [redacted]
	URL         // a connection URL: its password and secret parameters are redacted
	SDK         // read by the AWS SDK, not by us: listed by Usage, never logged
)

// Var is one documented variable.
type Var struct {
	Name, Default, Help string
	Kind                Kind
	value               string
}

// Env collects variables and their errors. The zero Env reads the process
// environment.
type Env struct {
	lookupFunc LookupFunc
	vars       []*Var
	errs       []error
}

// New returns an Env that reads variables through lookup (os.LookupEnv
// when nil).
func New(lookup LookupFunc) *Env { return &Env{lookupFunc: lookup} }

// read reads a variable through the Env's LookupFunc.
func (e *Env) read(name string) (string, bool) {
	if e.lookupFunc == nil {
		return os.LookupEnv(name)
	}
	return e.lookupFunc(name)
}

func (e *Env) lookup(name, def, help string, kind Kind) string {
	v := &Var{Name: name, Default: def, Help: help, Kind: kind}
	e.vars = append(e.vars, v)
	val, ok := e.read(name)
	if !ok {
		val = def
	}
	v.value = val
	return val
}

// String returns the variable, or def when it is unset. An empty value is
// kept: it means "off" for the variables that allow it.
func (e *Env) String(name, def, help string) string { return e.lookup(name, def, help, Plain) }

// Secret is String for values that must never be logged.
func (e *Env) Secret(name, help string) string { return e.lookup(name, "", help, Secret) }

// URL is String for connection URLs: they are logged with their passwords
// and secret parameters redacted, or not at all when they do not parse.
func (e *Env) URL(name, def, help string) string { return e.lookup(name, def, help, URL) }

// ReadBySDK documents a variable that the AWS SDK reads itself: Usage lists
// it, nothing here reads or logs it.
func (e *Env) ReadBySDK(name, help string) {
	e.vars = append(e.vars, &Var{Name: name, Help: help, Kind: SDK})
}

// Int returns the variable as an integer within [lo, hi].
func (e *Env) Int(name string, def, lo, hi int, help string) int {
	s := e.lookup(name, strconv.Itoa(def), help, Plain)
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < lo || n > hi {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, s, lo, hi))
		return def
	}
	return n
}

// Duration returns the variable as a positive Go duration ("30s", "2m").
func (e *Env) Duration(name string, def time.Duration, help string) time.Duration {
	s := e.lookup(name, def.String(), help, Plain)
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a positive duration such as 30s or 2m", name, s))
		return def
	}
	return d
}

// DurationOrOff is Duration that also takes 0 (or empty) for "none".
func (e *Env) DurationOrOff(name string, def time.Duration, help string) time.Duration {
	s := strings.TrimSpace(e.lookup(name, def.String(), help, Plain))
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
	s := e.lookup(name, d, help, Plain)
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
	for p := range strings.SplitSeq(e.lookup(name, def, help, Plain), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Failf records a validation error found by the caller.
func (e *Env) Failf(name, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

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
		switch {
		case v.Kind == SDK:
			def = "unset"
		case def == "":
			def = `""`
		}
		fmt.Fprintf(w, "  %s\n        %s (default %s)\n", v.Name, v.Help, def)
	}
}

// Effective returns name/value pairs for logging, with secrets and the
// secrets inside URLs redacted.
func (e *Env) Effective() []any {
	out := make([]any, 0, 2*len(e.vars))
	for _, v := range e.vars {
		switch v.Kind {
		case SDK:
			continue
		case Secret:
			out = append(out, v.Name, RedactSecret(v.value))
		case URL:
			out = append(out, v.Name, RedactURL(v.value))
		default:
			out = append(out, v.Name, v.value)
		}
	}
	return out
}

// Redacted is what a hidden value is logged as.
const Redacted = "[redacted]"

// RedactSecret hides a secret entirely (an empty one stays empty: "not set"
// is worth logging).
func RedactSecret(val string) string {
	if val == "" {
		return ""
	}
	return Redacted
}

// RedactURL hides what a connection URL can carry in secret: the password in
// its user information and the values of secret query parameters
// (password, sslpassword, tokens; see secretKey). A value that is not a
// plain absolute URL by net/url's reading is hidden whole: pgx and go-redis
// parse differently (pgx takes a '#' or '?' in a password literally), and a
// URL they can read but net/url cannot would otherwise be logged as is.
func RedactURL(val string) string {
	if val == "" {
		return ""
	}
	u, err := url.Parse(val)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.Host == "" || u.Fragment != "" || strings.Contains(val, "#") {
		return Redacted
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "redacted")
		}
	}
	q, ok := redactQuery(u.RawQuery)
	if !ok {
		return Redacted
	}
	u.RawQuery = q
	return u.String()
}

// redactQuery replaces the values of secret keys in a raw query, splitting it
// on '&' alone (as pgx does; net/url's parser drops pairs with a ';', which
// would hide them from the redaction but not from pgx).
func redactQuery(raw string) (string, bool) {
	if raw == "" {
		return "", true
	}
	pairs := strings.Split(raw, "&")
	for i, pair := range pairs {
		k, _, hasValue := strings.Cut(pair, "=")
		key, err := url.PathUnescape(k)
		if err != nil {
			return "", false
		}
		if hasValue && secretKey(key) {
			pairs[i] = k + "=redacted"
		}
	}
	return strings.Join(pairs, "&"), true
}

// secretKey reports whether a URL query key names a secret: pgx's password
// and sslpassword, and the usual spellings of tokens and keys.
func secretKey(key string) bool {
	key = strings.ToLower(strings.TrimSpace(key))
	for _, s := range []string{"password", "passwd", "pwd", "secret", "token", "signature", "credential", "apikey", "api_key", "access_key"} {
		if strings.Contains(key, s) {
			return true
		}
	}
	return false
}

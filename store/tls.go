package store

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// tlsKeys are the connection-string keys that decide TLS. pgx takes the last
// of a repeated key and rewrites ssl=true to sslmode=require, so a URL that
// names one twice, or both ssl and sslmode, reads differently to a person (or
// a check) than to pgx: such a URL is refused rather than guessed at.
var tlsKeys = map[string]bool{
	"sslmode": true, "ssl": true, "sslrootcert": true, "sslcert": true, "sslkey": true,
	"sslpassword": true, "sslsni": true, "sslnegotiation": true, "sslcertmode": true,
}

// errBadURL never quotes the URL: it can hold a password.
var errBadURL = errors.New("store: DATABASE_URL is not a valid PostgreSQL connection string")

// withTLS returns connString with the TLS defaults appended, after refusing
// repeated or conflicting TLS keys:
//
//   - DB_TLS_CA_FILE set: sslrootcert=FILE, and sslmode=verify-full unless
//     the URL names sslmode (or ssl);
//   - behind RDS Proxy, with no TLS named at all: sslmode=verify-full against
//     the system roots (sslrootcert=system). RDS Proxy presents certificates
//     from AWS Certificate Manager, which chain to Amazon's public roots.
//
// The parameters are appended to the text, not re-encoded by net/url, so pgx
// reads the rest of the URL exactly as written. What the URL then means is
// decided from pgx's own parse (see verifiesServer), never from this text.
func withTLS(connString, proxy, caFile string) (string, error) {
	keys, err := queryKeys(connString)
	if err != nil {
		return "", err
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if tlsKeys[k] && seen[k] {
			return "", fmt.Errorf("store: DATABASE_URL names %s more than once; pgx would take the last, so name it once", k)
		}
		seen[k] = true
	}
	if seen["ssl"] && seen["sslmode"] {
		return "", errors.New("store: DATABASE_URL names both ssl and sslmode; name only sslmode")
	}
	namesMode := seen["sslmode"] || seen["ssl"]
	var add []string
	switch {
	case caFile != "" && seen["sslrootcert"]:
		return "", errors.New("store: DB_TLS_CA_FILE and sslrootcert in DATABASE_URL both name the CA bundle; use one")
	case caFile != "":
		add = append(add, "sslrootcert="+queryEscape(caFile))
		if !namesMode {
			add = append(add, "sslmode=verify-full")
		}
	case proxy == ProxyRDS && !namesMode && !seen["sslrootcert"]:
		add = append(add, "sslmode=verify-full", "sslrootcert=system")
	}
	if len(add) == 0 {
		return connString, nil
	}
	sep := "&"
	switch {
	case !strings.Contains(afterUserinfo(connString), "?"):
		sep = "?"
	case strings.HasSuffix(connString, "?"):
		sep = ""
	}
	return connString + sep + strings.Join(add, "&"), nil
}

// afterUserinfo is a postgres:// URL without its scheme and user
// information, cut where pgx (like libpq) cuts it: at the first '@' that
// comes before any '/'.
func afterUserinfo(connString string) string {
	p, ok := strings.CutPrefix(connString, "postgresql://")
	if !ok {
		p, _ = strings.CutPrefix(connString, "postgres://")
	}
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		p = p[i+1:]
	}
	return p
}

// queryKeys returns the decoded keys of a postgres:// URL's query, in order,
// found the way pgx's parser finds them: after the user information, the
// host list (IPv6 addresses in brackets), ports and database name.
func queryKeys(connString string) ([]string, error) {
	if !strings.HasPrefix(connString, "postgres://") && !strings.HasPrefix(connString, "postgresql://") {
		return nil, errors.New("store: DATABASE_URL must be a postgres:// URL")
	}
	p := afterUserinfo(connString)
	for {
		if strings.HasPrefix(p, "[") {
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return nil, errBadURL
			}
			p = p[end+1:]
		} else if i := strings.IndexAny(p, ":/?,"); i >= 0 {
			p = p[i:]
		} else {
			return nil, nil
		}
		if strings.HasPrefix(p, ":") {
			if i := strings.IndexAny(p, "/?,"); i >= 0 {
				p = p[i:]
			} else {
				return nil, nil
			}
		}
		if !strings.HasPrefix(p, ",") {
			break
		}
		p = p[1:]
	}
	if strings.HasPrefix(p, "/") {
		i := strings.IndexByte(p, '?')
		if i < 0 {
			return nil, nil
		}
		p = p[i:]
	}
	if !strings.HasPrefix(p, "?") || p == "?" {
		return nil, nil
	}
	var keys []string
	for pair := range strings.SplitSeq(p[1:], "&") {
		raw, _, _ := strings.Cut(pair, "=")
		k, err := pctDecode(strings.Trim(raw, " "))
		if err != nil {
			return nil, errBadURL
		}
		if k == "dbname" {
			k = "database"
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// pctDecode decodes %XX escapes and nothing else ('+' stays '+'), as pgx does.
func pctDecode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errBadURL
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errBadURL
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

// queryEscape percent-encodes all but unreserved characters and '/', so that
// pgx (which does not read '+' as a space) decodes the value back exactly.
func queryEscape(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// verifiesServer reports whether every connection pgx may make with cc is
// TLS that verifies the server's chain and host name (sslmode=verify-full):
// the first attempt and every fallback, for every host. sslmode=prefer and
// allow leave a plaintext (nil) fallback; require and verify-ca skip the host
// name (InsecureSkipVerify, with at most a chain check of their own).
func verifiesServer(cc *pgconn.Config) bool {
	if !verifiesHost(cc.TLSConfig) {
		return false
	}
	for _, fb := range cc.Fallbacks {
		if !verifiesHost(fb.TLSConfig) {
			return false
		}
	}
	return true
}

func verifiesHost(tc *tls.Config) bool {
	return tc != nil && !tc.InsecureSkipVerify && tc.ServerName != ""
}

// describeTLS says, for an error message, what TLS cc gives instead.
func describeTLS(cc *pgconn.Config) string {
	tcs := []*tls.Config{cc.TLSConfig}
	for _, fb := range cc.Fallbacks {
		tcs = append(tcs, fb.TLSConfig)
	}
	worst := "TLS that verifies the server"
	for _, tc := range tcs {
		switch {
		case tc == nil && len(tcs) == 1:
			return "no TLS (sslmode=disable)"
		case tc == nil:
			return "a plaintext fallback (sslmode=prefer, the default, or allow)"
		case tc.InsecureSkipVerify && tc.VerifyPeerCertificate != nil:
			worst = "TLS that checks the chain but not the host name (sslmode=verify-ca, or require with a root certificate)"
		case tc.InsecureSkipVerify:
			worst = "TLS that does not verify the server (sslmode=require or ssl=true)"
		}
	}
	return worst
}

// sameEndpoint reports whether every fallback of cc goes to its first host
// and port: an IAM token is signed for one endpoint.
func sameEndpoint(cc *pgconn.Config) bool {
	for _, fb := range cc.Fallbacks {
		if fb.Host != cc.Host || fb.Port != cc.Port {
			return false
		}
	}
	return true
}

// IAMTarget returns the endpoint (host:port) and user that pgx connects to
// for connString, as pgx reads it: what an RDS IAM token must be signed for.
func IAMTarget(connString string) (endpoint, user string, err error) {
	if _, err := queryKeys(connString); err != nil {
		return "", "", err
	}
	cc, err := pgconn.ParseConfig(connString)
	if err != nil {
		return "", "", errBadURL // pgx's error can quote the URL
	}
	if cc.User == "" || cc.Host == "" || cc.Port == 0 {
		return "", "", errors.New("store: DATABASE_URL must name the user, host and port (postgres://user@host:5432/db)")
	}
	return net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), cc.User, nil
}

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Credentials from AWS Secrets Manager (DB_SECRET_ID): the user and password
// of every new connection come from a secret in the format RDS and its
// rotation functions write ({"username": ..., "password": ..., and host,
// port, dbname, engine, which the pool does not read: DATABASE_URL names the
// endpoint, RDS Proxy or the database). The secret is read once and cached;
// open connections are never affected by a rotation (PostgreSQL checks a
// password only at login). When the database refuses a login with the
// cached credentials (SQLSTATE 28P01 invalid_password, or 28000), the DB
// reads the secret again — at most once per RefetchEvery, however many
// logins failed — and new connections use what it holds:
//
//	rotation step (RDS's four)          what the pool sees
//	createSecret: AWSPENDING written    nothing: logins use AWSCURRENT
//	setSecret: the password changed     logins refused (28P01): the secret is
//	                                    read again, still the old password;
//	                                    refused again, read again after
//	                                    RefetchEvery...
//	finishSecret: AWSCURRENT moved      the next read has the new password:
//	                                    logins succeed, logged once
//
// A refusal is unavailable (resilience.Classify): it counts against the
// database breaker, like a database that is down, so a long window pauses
// the consumers instead of burning receives; the breaker's probe logs in
// too, and its refusals read the secret again as well.

// SecretsManagerAPI is the part of the Secrets Manager client the pool uses.
type SecretsManagerAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Secret timing.
const (
	// SecretFetchTimeout bounds one read of the secret, the SDK's retries
	// included.
	SecretFetchTimeout = 5 * time.Second
	// RefetchEvery is the least time between two reads of the secret
	// after refusals: however many logins fail at once, Secrets Manager
	// sees one call per RefetchEvery per process.
	RefetchEvery = time.Second
)

// SecretCredentials reads and caches the database credentials of one secret.
// Safe for concurrent use.
type SecretCredentials struct {
	client SecretsManagerAPI
	id     string
	now    func() time.Time

	mu        sync.Mutex
	user      string
	password  string
	version   string
	fetchedAt time.Time
	fetches   int
}

// NewSecretCredentials returns the credentials of secret id (a name or an
// ARN). It reads nothing until the first connection asks.
func NewSecretCredentials(client SecretsManagerAPI, id string) *SecretCredentials {
	return &SecretCredentials{client: client, id: id, now: time.Now}
}

// Copy returns another, empty cache of the same secret: another process's
// (the tests' execution environments, each with its own).
func (s *SecretCredentials) Copy() *SecretCredentials { return NewSecretCredentials(s.client, s.id) }

// SecretID is the secret's name or ARN (not a secret itself: it may be
// logged).
func (s *SecretCredentials) SecretID() string { return s.id }

// Fetches is how many times the secret was read.
func (s *SecretCredentials) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// Credentials returns the cached user and password, reading the secret on
// first use.
func (s *SecretCredentials) Credentials(ctx context.Context) (user, password string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.password == "" {
		if _, err := s.fetchLocked(ctx); err != nil {
			return "", "", err
		}
	}
	return s.user, s.password, nil
}

// Refetch reads the secret again after the database refused its
// credentials, unless it was read within RefetchEvery (a burst of refusals
// reads it once). It reports whether the credentials changed, and the
// version now cached.
func (s *SecretCredentials) Refetch(ctx context.Context) (changed bool, version string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fetchedAt.IsZero() && s.now().Sub(s.fetchedAt) < RefetchEvery {
		return false, s.version, nil
	}
	changed, err = s.fetchLocked(ctx)
	return changed, s.version, err
}

// beforeConnectHook is beforeConnect, or nil for no secret.
func (s *SecretCredentials) beforeConnectHook() func(context.Context, *pgx.ConnConfig) error {
	if s == nil {
		return nil
	}
	return s.beforeConnect
}

// beforeConnect gives a new connection the secret's login (pgxpool's
// BeforeConnect).
func (s *SecretCredentials) beforeConnect(ctx context.Context, cc *pgx.ConnConfig) error {
	user, password, err := s.Credentials(ctx)
	if err != nil {
		return err
	}
	cc.User, cc.Password = user, password
	return nil
}

// rdsSecret is the JSON of an RDS database secret; the pool reads two keys.
type rdsSecret struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// fetchLocked reads the secret within SecretFetchTimeout and caches it; it
// reports whether the user or password changed. Errors name the secret and
// never quote its value.
func (s *SecretCredentials) fetchLocked(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, SecretFetchTimeout)
	defer cancel()
	s.fetchedAt = s.now()
	s.fetches++
	out, err := s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.id)})
	if err != nil {
		return false, fmt.Errorf("database credentials: read secret %s (DB_SECRET_ID): %w", s.id, err)
	}
	var sec rdsSecret
	if out.SecretString == nil || json.Unmarshal([]byte(*out.SecretString), &sec) != nil {
		return false, fmt.Errorf("database credentials: secret %s (DB_SECRET_ID) is not the JSON of an RDS secret", s.id)
	}
	if sec.Username == "" || sec.Password == "" {
		return false, fmt.Errorf("database credentials: secret %s (DB_SECRET_ID) has no username or no password", s.id)
	}
	changed := s.password != "" && (sec.Username != s.user || sec.Password != s.password)
	s.user, s.password, s.version = sec.Username, sec.Password, aws.ToString(out.VersionId)
	return changed, nil
}

// CredentialsRefused reports whether err is the database refusing a login:
// SQLSTATE 28P01 (invalid_password) or 28000
// (invalid_authorization_specification, which PostgreSQL's pg_hba and RDS
// Proxy answer for an unknown user or a refused method).
func CredentialsRefused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
}

// refused reads the secret again when err is a refused login, and logs once
// per change that the credentials were refreshed.
func (db *DB) refused(ctx context.Context, err error) {
	if db.secret == nil || !CredentialsRefused(err) {
		return
	}
	// The caller's context may be ending (a handler's deadline); the read
	// has its own bound.
	changed, version, ferr := db.secret.Refetch(context.WithoutCancel(ctx))
	switch {
	case ferr != nil:
		db.log.Warn("the database refused the credentials, and reading the secret again failed", "secret_id", db.secret.SecretID(), "err", ferr)
	case changed:
		db.log.Info("database credentials refreshed: the database refused the cached ones, and the secret holds new ones",
			"secret_id", db.secret.SecretID(), "version_id", version)
	}
}

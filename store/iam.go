package store

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/jackc/pgx/v5/pgconn"
)

// IAM token lifetimes. RDS signs a token for 15 minutes; the pool reuses one
// for every new connection until it is within TokenRenewBefore of expiring
// (or of its credentials expiring), then builds the next. A token is only
// checked when a connection opens, so open connections outlive it.
const (
	TokenLifetime    = 15 * time.Minute
	TokenRenewBefore = 5 * time.Minute
)

// IAMTokens builds RDS IAM authentication tokens for one endpoint and user
// with the AWS credential chain (the ECS task role), and caches the current
// one. Safe for concurrent use; never builds a token per query.
type IAMTokens struct {
	endpoint, region, user string
	creds                  aws.CredentialsProvider
	now                    func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
	builds  int
}

// NewIAMTokens returns a token source for host:port, region and user
// (IAMTarget reads the first and the last from DATABASE_URL). It retrieves
// no credentials until the first Token call.
func NewIAMTokens(endpoint, region, user string, creds aws.CredentialsProvider) *IAMTokens {
	return &IAMTokens{endpoint: endpoint, region: region, user: user, creds: creds, now: time.Now}
}

// signsFor reports whether the tokens are for the endpoint and user cc
// connects to (RDS checks both).
func (s *IAMTokens) signsFor(cc *pgconn.Config) bool {
	return s.endpoint == net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))) && s.user == cc.User
}

// Token returns a valid token, building a new one when the cached one is
// due for renewal.
func (s *IAMTokens) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.token != "" && now.Before(s.renewAt) {
		return s.token, nil
	}
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("rds iam token: credentials: %w", err)
	}
	static := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	token, err := auth.BuildAuthToken(ctx, s.endpoint, s.region, s.user, static)
	if err != nil {
		return "", fmt.Errorf("rds iam token for %s@%s: %w", s.user, s.endpoint, err)
	}
	expires := now.Add(TokenLifetime)
	if creds.CanExpire && creds.Expires.Before(expires) {
		expires = creds.Expires // temporary credentials sign nothing past their own end
	}
	s.token, s.renewAt = token, expires.Add(-TokenRenewBefore)
	s.builds++
	return s.token, nil
}

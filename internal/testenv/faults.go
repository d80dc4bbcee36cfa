package testenv

import (
	"testing"

	"github.com/orderpipe/orderpipe/internal/faults"
)

// The fault servers live in internal/faults, which the failover drill
// shares; these names keep the tests' spelling.
type (
	// AWSProxy is faults.AWSProxy.
	AWSProxy = faults.AWSProxy
	// AWSFault is faults.AWSFault.
	AWSFault = faults.AWSFault
	// SMTPServer is faults.SMTPServer.
	SMTPServer = faults.SMTPServer
	// SMTPMode is faults.SMTPMode.
	SMTPMode = faults.SMTPMode
	// ReceivedMail is faults.ReceivedMail.
	ReceivedMail = faults.ReceivedMail
)

// Faults and modes, as in internal/faults.
const (
	AWSReset              = faults.AWSReset
	AWSInternalError      = faults.AWSInternalError
	AWSThrottle           = faults.AWSThrottle
	AWSUnavailable        = faults.AWSUnavailable
	SMTPAccept            = faults.SMTPAccept
	SMTPDropBeforeVerdict = faults.SMTPDropBeforeVerdict
	SMTPRefuse            = faults.SMTPRefuse
)

// StartAWSProxy starts a fault proxy to upstream (the emulator's URL) on a
// free port of 127.0.0.1; it stops when the test ends.
func StartAWSProxy(t testing.TB, upstream string) *AWSProxy {
	t.Helper()
	p, err := faults.NewAWSProxy(t.Context(), upstream)
	if err != nil {
		t.Fatalf("aws proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// StartSMTP starts a scriptable SMTP server on a free port of 127.0.0.1,
// accepting every message; it stops when the test ends.
func StartSMTP(t testing.TB) *SMTPServer {
	t.Helper()
	s, err := faults.NewSMTPServer(t.Context())
	if err != nil {
		t.Fatalf("smtp server: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

package deploy

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestTemplatesPassCfnLint runs cfn-lint, which checks every resource's
// properties (names, types, allowed values) against CloudFormation's own
// resource schemas: the check that reaches the resources moto does not
// model (RDS Proxy, Aurora, ElastiCache, autoscaling, subscriptions). It
// comes with moto's CloudFormation extras, which `make up` installs.
// W3002 (a TemplateURL that is a local file, for `aws cloudformation
// package`) is how the parent is meant to be deployed.
func TestTemplatesPassCfnLint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cfn-lint: skipped by -short")
	}
	cmd := []string{"cfn-lint"}
	if _, err := exec.LookPath("cfn-lint"); err != nil {
		cmd = []string{"python3", "-m", "cfnlint"}
		if exec.CommandContext(t.Context(), "python3", "-c", "import cfnlint").Run() != nil {
			t.Fatal("cfn-lint is not installed (run `make up`: it comes with moto[cloudformation])")
		}
	}
	files, err := filepath.Glob("cloudformation/*.yaml")
	if err != nil || len(files) != 4 { // the parent, data, pipeline and its Lambda variant (functions)
		t.Fatalf("templates %v (%v), want four", files, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(append(cmd[1:], "--format", "parseable", "--ignore-checks", "W3002", "--"), files...)
	out, err := exec.CommandContext(ctx, cmd[0], args...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("cfn-lint %v: %v\n%s", files, err, out)
	}
}

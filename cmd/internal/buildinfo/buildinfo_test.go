package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFormat(t *testing.T) {
	withVCS := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/orderpipe/orderpipe", Version: "v0.0.0-20261128234200-6e578da1c2ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "6e578da1c2ab0000000000000000000000000000"},
			{Key: "vcs.time", Value: "2026-11-28T23:42:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	// The image build: .dockerignore leaves .git out, so no vcs.* settings.
	noVCS := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/orderpipe/orderpipe", Version: "(devel)"}}
	for _, tt := range []struct {
		name, stamped string
		bi            *debug.BuildInfo
		want          string
	}{
		{
			name: "stamped version wins, build info below it",
			bi:   withVCS, stamped: "v1.4.0",
			want: `worker v1.4.0
module:   github.com/orderpipe/orderpipe v0.0.0-20261128234200-6e578da1c2ab+dirty
revision: 6e578da1c2ab0000000000000000000000000000
time:     2026-11-28T23:42:00Z
modified: true
go:       go1.26.8
`,
		},
		{
			name: "no stamp: the module version",
			bi:   withVCS,
			want: `worker v0.0.0-20261128234200-6e578da1c2ab+dirty
module:   github.com/orderpipe/orderpipe v0.0.0-20261128234200-6e578da1c2ab+dirty
revision: 6e578da1c2ab0000000000000000000000000000
time:     2026-11-28T23:42:00Z
modified: true
go:       go1.26.8
`,
		},
		{
			name: "image build without VCS information",
			bi:   noVCS, stamped: "v1.4.0",
			want: `worker v1.4.0
module:   github.com/orderpipe/orderpipe (devel)
revision: unknown
time:     unknown
modified: unknown
go:       go1.26.8
`,
		},
		//nolint:dupword // "unknown unknown": neither the module path nor its version is known
		{
			name: "no build information at all",
			want: `worker unknown
module:   unknown unknown
revision: unknown
time:     unknown
modified: unknown
go:       unknown
`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, format("worker", tt.stamped, tt.bi)); diff != "" {
				t.Errorf("format (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStringReadsThisBinary checks String against the test binary's own
// build information, which Go always records.
func TestStringReadsThisBinary(t *testing.T) {
	got := String("orderctl", "v9.9.9")
	if !strings.HasPrefix(got, "orderctl v9.9.9\nmodule:   ") {
		t.Errorf("String = %q, want the stamped version first, then the module", got)
	}
	bi, _ := debug.ReadBuildInfo()
	if !strings.Contains(got, "\ngo:       "+bi.GoVersion+"\n") {
		t.Errorf("String = %q, want the Go version %s", got, bi.GoVersion)
	}
}

func TestRequested(t *testing.T) {
	for arg, want := range map[string]bool{"--version": true, "-version": true, "version": false, "-v": false, "-h": false} {
		if got := Requested(arg); got != want {
			t.Errorf("Requested(%q) = %v, want %v", arg, got, want)
		}
	}
}

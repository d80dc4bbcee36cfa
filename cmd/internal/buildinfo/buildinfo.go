// Package buildinfo answers `--version` for the commands: the version the
// build stamped (`-ldflags "-X main.version=..."`, as the Dockerfile does)
// or, when none was, the module version Go recorded, with the VCS revision,
// its time, whether the tree was modified, and the Go version.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Unknown stands for what the build did not record: a build without VCS
// information (the image build, whose context leaves .git out) has no
// revision.
const Unknown = "unknown"

// Requested says whether arg asks for the version.
func Requested(arg string) bool { return arg == "--version" || arg == "-version" }

// String is what `PROG --version` prints: the version on the first line,
// then the build information, one "key: value" per line.
func String(prog, stamped string) string {
	bi, _ := debug.ReadBuildInfo()
	return format(prog, stamped, bi)
}

// Version is the version String prints first: the stamped one, or else the
// module version Go recorded.
func Version(stamped string) string {
	if stamped != "" {
		return stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		return orUnknown(bi.Main.Version)
	}
	return Unknown
}

// format is String with the build information given; bi may be nil.
func format(prog, stamped string, bi *debug.BuildInfo) string {
	module, modVersion, goVersion := Unknown, Unknown, Unknown
	vcs := map[string]string{"vcs.revision": Unknown, "vcs.time": Unknown, "vcs.modified": Unknown}
	if bi != nil {
		module, modVersion, goVersion = orUnknown(bi.Main.Path), orUnknown(bi.Main.Version), orUnknown(bi.GoVersion)
		for _, s := range bi.Settings {
			if _, ok := vcs[s.Key]; ok && s.Value != "" {
				vcs[s.Key] = s.Value
			}
		}
	}
	version := stamped
	if version == "" {
		version = modVersion
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", prog, version)
	fmt.Fprintf(&b, "module:   %s %s\n", module, modVersion)
	fmt.Fprintf(&b, "revision: %s\n", vcs["vcs.revision"])
	fmt.Fprintf(&b, "time:     %s\n", vcs["vcs.time"])
	fmt.Fprintf(&b, "modified: %s\n", vcs["vcs.modified"])
	fmt.Fprintf(&b, "go:       %s\n", goVersion)
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return Unknown
	}
	return s
}

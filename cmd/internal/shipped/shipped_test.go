package shipped

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const module = "github.com/orderpipe/orderpipe"

// shipped are the commands the image contains, as the Dockerfile builds them.
var shipped = []string{"./cmd/worker", "./cmd/orderctl"}

// tooling are the packages and modules that must stay out of what ships: an
// entry ending in "/" is a prefix, any other matches itself and what is
// under it.
var tooling = []string{
	module + "/internal/bench",
	module + "/internal/drill",
	module + "/internal/faults",
	module + "/cmd/orderbench",
	"github.com/Shopify/toxiproxy/",
	"gonum.org/",
	"github.com/schollz/progressbar",
	// gonum/plot's fonts, LaTeX, PDF, SVG and raster backends.
	"codeberg.org/go-fonts/",
	"codeberg.org/go-latex/",
	"codeberg.org/go-pdf/",
	"git.sr.ht/~sbinet/",
	"github.com/ajstarks/svgo",
	"github.com/golang/freetype",
	"golang.org/x/image",
}

func isTooling(path string) bool {
	for _, t := range tooling {
		if strings.HasSuffix(t, "/") && strings.HasPrefix(path, t) || path == t || strings.HasPrefix(path, t+"/") {
			return true
		}
	}
	return false
}

// deps is `go list -deps` of the commands: every package they link, and
// every module those packages come from.
func deps(t *testing.T, cmds ...string) (pkgs, mods []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"list", "-deps", "-f", "{{.ImportPath}}\t{{with .Module}}{{.Path}}{{end}}"}
	for _, c := range cmds {
		args = append(args, module+strings.TrimPrefix(c, "."))
	}
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		pkg, mod, _ := strings.Cut(line, "\t")
		pkgs = append(pkgs, pkg)
		if mod != "" && !slices.Contains(mods, mod) {
			mods = append(mods, mod)
		}
	}
	return pkgs, mods
}

func TestShippedCommandsLinkNoTooling(t *testing.T) {
	pkgs, mods := deps(t, shipped...)
	var found []string // this module's tooling packages, other modules whole
	for _, p := range pkgs {
		if strings.HasPrefix(p, module+"/") && isTooling(p) {
			found = append(found, p)
		}
	}
	for _, m := range mods {
		if isTooling(m) {
			found = append(found, m)
		}
	}
	for _, p := range found {
		t.Errorf("%s link %s: tooling belongs in cmd/orderbench, which the image does not contain", strings.Join(shipped, " and "), p)
	}
}

// TestToolingListIsLive keeps the list above honest: orderbench links what
// it names, so a renamed package or module cannot make the check vacuous.
func TestToolingListIsLive(t *testing.T) {
	pkgs, mods := deps(t, "./cmd/orderbench")
	for _, want := range []string{module + "/internal/bench", module + "/internal/drill", module + "/cmd/orderbench", "gonum.org/v1/plot", "github.com/schollz/progressbar/v3"} {
		if !slices.Contains(pkgs, want) && !slices.Contains(mods, want) {
			t.Errorf("go list -deps ./cmd/orderbench has no %s: update the tooling list", want)
		}
		if !isTooling(want) {
			t.Errorf("isTooling(%q) = false", want)
		}
	}
}

// TestDockerfileBuildsTheShippedCommands ties the list above to what the
// image contains: its build compiles exactly those commands, stamps the
// version, and copies only their binaries.
func TestDockerfileBuildsTheShippedCommands(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := strings.ReplaceAll(string(b), "\\\n", " ")
	build := regexp.MustCompile(`(?m)^RUN .*\bgo build (.*)$`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("Dockerfile: no `RUN ... go build` line")
	}
	if !strings.Contains(build[1], "-X main.version=${VERSION}") {
		t.Errorf("Dockerfile go build %q: want -ldflags with -X main.version=${VERSION}", build[1])
	}
	if diff := cmp.Diff(shipped, regexp.MustCompile(`\./cmd/\S+`).FindAllString(build[1], -1)); diff != "" {
		t.Errorf("Dockerfile builds other commands than the shipped ones (-want +got):\n%s", diff)
	}
	copied := regexp.MustCompile(`(?m)^COPY --from=build (.*) /$`).FindStringSubmatch(df)
	if copied == nil {
		t.Fatal("Dockerfile: no `COPY --from=build ... /` line")
	}
	if diff := cmp.Diff([]string{"/out/worker", "/out/orderctl"}, strings.Fields(copied[1])); diff != "" {
		t.Errorf("Dockerfile copies other binaries than the shipped ones (-want +got):\n%s", diff)
	}
}

// TestVersionNeedsNoConfiguration builds the three commands with a stamped
// version, as the Dockerfile does, and runs `--version` in an environment
// every configuration check refuses: the version comes first, then the
// build information.
func TestVersionNeedsNoConfiguration(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const stamp = "v9.9.9-test"
	args := []string{"build", "-ldflags=-X main.version=" + stamp, "-o", dir + string(filepath.Separator)}
	for _, c := range []string{"./cmd/worker", "./cmd/orderctl", "./cmd/orderbench"} {
		args = append(args, module+strings.TrimPrefix(c, "."))
	}
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bad := []string{"DB_MAX_CONNS=lots", "LOG_LEVEL=loud", "IDEMPOTENCY_LEASE=1ns", "DATABASE_URL=::", "AWS_REGION="}
	for _, name := range []string{"worker", "orderctl", "orderbench"} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, filepath.Join(dir, name), "--version")
			cmd.Env = bad
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s --version: %v\n%s", name, err, out)
			}
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != 6 {
				t.Fatalf("%s --version printed %d lines, want 6:\n%s", name, len(lines), out)
			}
			var keys []string
			for _, l := range lines[1:] {
				k, _, _ := strings.Cut(l, ":")
				keys = append(keys, k)
			}
			if lines[0] != name+" "+stamp {
				t.Errorf("first line %q, want %q", lines[0], name+" "+stamp)
			}
			if diff := cmp.Diff([]string{"module", "revision", "time", "modified", "go"}, keys); diff != "" {
				t.Errorf("build information lines (-want +got):\n%s\noutput:\n%s", diff, out)
			}
			if !strings.HasPrefix(lines[1], "module:   "+module+" ") || !strings.HasPrefix(lines[5], "go:       go1.") {
				t.Errorf("output:\n%s\nwant the module path and the Go version", out)
			}
		})
	}
}

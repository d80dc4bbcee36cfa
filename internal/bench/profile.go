package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// Profile is a CPU profile of the worker under saturation, with pprof's
// summaries of it.
type Profile struct {
	Path   string     `json:"path"`
	Run    *RunResult `json:"run"`
	Top    string     `json:"top"`     // go tool pprof -top: flat time per function
	TopCum string     `json:"top_cum"` // go tool pprof -top -cum: time under each function
}

// profile saturates the pipeline with a worker that runs it in-process
// under runtime/pprof (ProfileArgv: the worker binary has no profiling
// endpoint), then summarises the profile with `go tool pprof`.
func (b *Bench) profile(ctx context.Context) error {
	if len(b.cfg.ProfileArgv) == 0 {
		return errors.New("bench: Config.ProfileArgv is required to profile")
	}
	b.logf("\n== profile ==\nsaturating the pipeline for %s with a worker under runtime/pprof\n", b.cfg.ProfileDuration)
	path := filepath.Join(b.cfg.OutDir, "worker.cpu.pprof")
	_ = os.Remove(path)
	argv := append(slices.Clone(b.cfg.ProfileArgv), path)
	run, err := b.runPipeline(ctx, pipelineRun{name: "profile", argv: argv, duration: b.cfg.ProfileDuration, warmup: 5 * time.Second, procEvery: time.Second})
	b.res.Profile = &Profile{Path: path, Run: run}
	if err != nil {
		return err
	}
	p := b.res.Profile
	if p.Top, err = pprofTop(ctx, path, "-top"); err != nil {
		return err
	}
	if p.TopCum, err = pprofTop(ctx, path, "-top", "-cum"); err != nil {
		return err
	}
	errs := []error{
		os.WriteFile(filepath.Join(b.cfg.OutDir, "profile-top.txt"), []byte(p.Top), 0o644),
		os.WriteFile(filepath.Join(b.cfg.OutDir, "profile-top-cum.txt"), []byte(p.TopCum), 0o644),
	}
	b.logf("%s\n(full profile: go tool pprof -http=: %s)\n", p.Top, path)
	return errors.Join(errs...)
}

// pprofTop runs `go tool pprof` on a profile (which carries its symbols).
func pprofTop(ctx context.Context, path string, flags ...string) (string, error) {
	args := append([]string{"tool", "pprof", "-nodecount=35"}, flags...)
	out, err := exec.CommandContext(ctx, "go", append(args, path)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: go tool pprof: %w\n%s", err, out)
	}
	return string(out), nil
}

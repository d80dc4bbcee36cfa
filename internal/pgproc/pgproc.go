// Package pgproc runs PostgreSQL's server binaries as plain processes, for
// the failover drill (a primary and a standby of its own) and the tests that
// restart a database: where the binaries are, and running them as the
// postgres OS user, since PostgreSQL refuses to run as root.
package pgproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
)

// Bin finds a PostgreSQL server binary (Debian keeps them off PATH).
func Bin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) == 0 {
		return "", fmt.Errorf("pgproc: %s not found (install postgresql)", name)
	}
	return matches[len(matches)-1], nil
}

// Command runs name as the postgres OS user when we are root, else as us.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...) //nolint:gosec // G204: PostgreSQL's own binaries (Bin), arguments from the drill and the tests
	}
	return exec.CommandContext(ctx, name, args...) //nolint:gosec // G204: as above
}

// Chown hands dir and everything under it to the postgres user when we are
// root; otherwise it does nothing.
func Chown(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("pgproc: postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid) //nolint:gosec // G122: a data directory this process just created; Lchown follows no link
	}); err != nil {
		return fmt.Errorf("pgproc: hand %s to the postgres user: %w", dir, err)
	}
	return nil
}

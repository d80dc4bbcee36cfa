package bench

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Machine describes where a benchmark ran.
type Machine struct {
	Cores     int    `json:"cores"`
	MemoryMiB int64  `json:"memory_mib"`
	CPU       string `json:"cpu"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	Postgres  string `json:"postgres"`
}

// String is the one line the README shows.
func (m Machine) String() string {
	s := strconv.Itoa(m.Cores) + " cores"
	if m.CPU != "" {
		s += " (" + m.CPU + ")"
	}
	s += ", " + strconv.FormatFloat(float64(m.MemoryMiB)/1024, 'f', 1, 64) + " GiB memory, " + m.Go
	if m.Postgres != "" {
		s += ", PostgreSQL " + m.Postgres
	}
	if m.Kernel != "" {
		s += ", Linux " + m.Kernel
	}
	return s
}

// ThisMachine reads /proc for the cores, memory and CPU model; admin, if
// set, for the PostgreSQL version.
func ThisMachine(ctx context.Context, admin *pgxpool.Pool) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemoryMiB = procField(b, "MemTotal") / 1024
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = procText(b, "model name")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if admin != nil {
		_ = admin.QueryRow(ctx, `SHOW server_version`).Scan(&m.Postgres)
		if i := strings.IndexByte(m.Postgres, ' '); i > 0 {
			m.Postgres = m.Postgres[:i]
		}
	}
	return m
}

func procText(b []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func procField(b []byte, key string) int64 {
	f := strings.Fields(procText(b, key))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

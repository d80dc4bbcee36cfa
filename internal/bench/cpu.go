package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPUShare is the CPU one part of the stack used during a run, in cores.
type CPUShare struct {
	Name  string  `json:"name"`
	Cores float64 `json:"cores"`
}

// Parts of the machine a CPU breakdown names.
const (
	partPostgres   = "postgres (benchmark database)"
	partPGShared   = "postgres (shared: WAL writer, checkpointer…)"
	partWorker     = "worker"
	partEmulator   = "SNS/SQS emulator"
	partMailpit    = "mailpit"
	partPgBouncer  = "pgbouncer"
	partToxiproxy  = "toxiproxy (the cloud profile's latency)"
	partRedis      = "redis"
	partBench      = "bench (load generator)"
	partOther      = "other processes"
	partMachineAll = "machine (all cores)"
)

// CPUProbe takes snapshots of every process's CPU time, to say afterwards
// where a run's CPU went: the database, the emulator, the worker... and
// anything else running on the machine, which a benchmark must own up to.
type CPUProbe struct {
	dbname   string
	pids     map[string]int // fixed processes by part: worker, emulator, ...
	start    map[int]procCPU
	startAll time.Duration
	startAt  time.Time
}

type procCPU struct {
	part string
	cpu  time.Duration
}

// NewCPUProbe snapshots now. pids names processes whose part is known
// (the worker, the emulator, Mailpit, PgBouncer from the stack's pid
// files); PostgreSQL backends are told apart by their process title.
func NewCPUProbe(dbname string, pids map[string]int) *CPUProbe {
	p := &CPUProbe{dbname: dbname, pids: pids, startAt: time.Now()}
	p.start, p.startAll = p.snapshot()
	return p
}

// Stop snapshots again and returns each part's share, largest first, then
// the machine's total.
func (p *CPUProbe) Stop() []CPUShare {
	end, endAll := p.snapshot()
	wall := time.Since(p.startAt).Seconds()
	byPart := map[string]time.Duration{}
	for pid, e := range end {
		d := e.cpu
		if s, ok := p.start[pid]; ok {
			d -= s.cpu
		}
		byPart[e.part] += max(d, 0)
	}
	var known time.Duration
	shares := make([]CPUShare, 0, len(byPart)+2)
	for part, d := range byPart {
		known += d
		shares = append(shares, CPUShare{Name: part, Cores: d.Seconds() / wall})
	}
	// What exited during the run is in the machine's total, not in any part.
	all := endAll - p.startAll
	shares = append(shares, CPUShare{Name: partOther, Cores: max(all-known, 0).Seconds() / wall})
	slices.SortFunc(shares, func(a, b CPUShare) int { return int(1e6 * (b.Cores - a.Cores)) })
	return append(shares, CPUShare{Name: partMachineAll, Cores: all.Seconds() / wall})
}

func (p *CPUProbe) snapshot() (map[int]procCPU, time.Duration) {
	out := map[int]procCPU{}
	fixed := map[int]string{}
	for part, pid := range p.pids {
		fixed[pid] = part
	}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		part, ok := fixed[pid]
		if !ok {
			part = p.classify(pid, self)
		}
		if part == "" {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if cpu, err := parseStatCPU(stat); err == nil {
			out[pid] = procCPU{part: part, cpu: cpu}
		}
	}
	return out, machineCPU()
}

// classify names the part of a process that is not in p.pids, or "" for
// one that belongs to nothing the benchmark knows (counted as other).
func (p *CPUProbe) classify(pid, self int) string {
	if pid == self {
		return partBench
	}
	cmd, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	// Backends are titled "postgres: 15/main: USER DB HOST(PORT) STATE",
	// autovacuum workers "postgres: 15/main: autovacuum worker DB", the
	// cluster's background processes "postgres: 15/main: walwriter".
	title := string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})) + " "
	cluster := strings.HasPrefix(title, "postgres: ") && strings.Contains(title, "/main: ")
	switch {
	case cluster && strings.Contains(title, " "+p.dbname+" "):
		return partPostgres
	case cluster && !strings.Contains(title, "(") && !strings.Contains(title, "autovacuum worker"):
		return partPGShared
	case strings.HasPrefix(title, "redis-server") && strings.Contains(title, ":6379"):
		return partRedis
	}
	return ""
}

// machineCPU is the busy time of all CPUs since boot, from /proc/stat.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// StackPIDs reads the pid files scripts/stack.sh keeps in stateDir/run.
func StackPIDs(stateDir string) map[string]int {
	pids := map[string]int{}
	for file, part := range map[string]string{"emulator": partEmulator, "mailpit": partMailpit, "pgbouncer": partPgBouncer, "toxiproxy": partToxiproxy} {
		b, err := os.ReadFile(filepath.Join(stateDir, "run", file+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids[part] = pid
		}
	}
	return pids
}

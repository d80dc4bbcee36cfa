package bench

import (
	"bytes"
	"errors"
	"fmt"
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
	// postmaster is PostgreSQL's parent process (0: none seen), and
	// startReaped the CPU of the children it had reaped at the start.
	postmaster  int
	startReaped time.Duration
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
	p.postmaster = postmasterOf(p.start)
	p.startReaped = reapedCPU(p.postmaster)
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
	byPart[partPostgres] += p.exitedBackends(end)
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

// exitedBackends is the CPU, during the run, of the PostgreSQL processes
// that exited before its end (PgBouncer closes idle server connections and
// opens new ones under load): the postmaster's reaped children's time grew
// by their whole lives, less what those alive at the start had used by
// then. It is counted as the benchmark database's: nothing else uses the
// cluster during a run.
func (p *CPUProbe) exitedBackends(end map[int]procCPU) time.Duration {
	if p.postmaster == 0 {
		return 0
	}
	d := reapedCPU(p.postmaster) - p.startReaped
	for pid, s := range p.start {
		if _, alive := end[pid]; !alive && (s.part == partPostgres || s.part == partPGShared) {
			d -= s.cpu
		}
	}
	return max(d, 0)
}

// postmasterOf is the parent of the PostgreSQL processes in snap, or 0.
func postmasterOf(snap map[int]procCPU) int {
	for pid, s := range snap {
		if s.part != partPostgres && s.part != partPGShared {
			continue
		}
		if f, err := statFields(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil && len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				return ppid
			}
		}
	}
	return 0
}

// reapedCPU is the user and system time of pid's children it has waited
// for (cutime and cstime), or 0.
func reapedCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	f, err := statFields(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil || len(f) < 15 {
		return 0
	}
	// After ')': state is field 3, so cutime (16) and cstime (17) are f[13], f[14].
	cutime, err1 := strconv.ParseInt(f[13], 10, 64)
	cstime, err2 := strconv.ParseInt(f[14], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(cutime+cstime) * time.Second / clockTicks
}

// statFields are the fields of /proc/PID/stat after the command's ")".
func statFields(path string) ([]string, error) {
	stat, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, errors.New("no ')' in stat")
	}
	return strings.Fields(string(stat[i+1:])), nil
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

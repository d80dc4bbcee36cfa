package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// The command name holds a space and a parenthesis.
	stat := []byte("4242 (my (odd) worker) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 12 0 100 2000000 3000 18446744073709551615\n")
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("parseStatCPU = %s, want %s (300 ticks)", got, want)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("parseStatCPU accepted a short line")
	}
}

func TestParseStatusMem(t *testing.T) {
	status := []byte("Name:\tworker\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t8\n")
	rss, hwm := parseStatusMem(status)
	if rss != 40<<20 || hwm != 50<<20 {
		t.Errorf("parseStatusMem = %d, %d; want %d, %d", rss, hwm, 40<<20, 50<<20)
	}
}

func TestReadProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	st, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RSS <= 0 || st.HWM < st.RSS {
		t.Errorf("ReadProc: RSS %d, HWM %d", st.RSS, st.HWM)
	}
}

func TestUsage(t *testing.T) {
	t0 := time.Unix(1000, 0)
	samples := []ProcStat{
		{At: t0, CPU: time.Second, RSS: 10 << 20, HWM: 12 << 20},
		{At: t0.Add(2 * time.Second), CPU: 2 * time.Second, RSS: 20 << 20, HWM: 20 << 20},
	}
	u := Usage(samples)
	if u.CPUCores != 0.5 || u.PeakRSS != 20<<20 {
		t.Errorf("Usage = %+v, want 0.5 cores and 20 MiB", u)
	}
}

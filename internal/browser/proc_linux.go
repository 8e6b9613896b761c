//go:build linux

package browser

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// setProcAttr starts Chrome in its own process group, so that one signal
// reaches all its processes, and asks the kernel to kill it when the thread
// that started it (and so the worker) dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the process group led by pid.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// killUsing kills every process whose command line mentions dir (Chrome
// passes --user-data-dir to all its children, and the crash handler's
// database lives in dir), until none is found a few times in a row.
func killUsing(dir string) {
	if dir == "" {
		return
	}
	deadline := time.Now().Add(3 * time.Second)
	for quiet := 0; quiet < 3 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(processesUsing(dir, true)) == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// processesUsing returns the pids of the processes whose command line
// mentions dir, killing them when kill is set.
func processesUsing(dir string, kill bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte(dir)
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, want) {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && isZombie(stat) {
			continue
		}
		pids = append(pids, pid)
		if kill {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return pids
}

// isZombie reports whether a /proc/<pid>/stat line is of a zombie, which
// waits only for its parent to reap it.
func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

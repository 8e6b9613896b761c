//go:build unix && !linux

package browser

import (
	"os/exec"
	"syscall"
)

// setProcAttr starts Chrome in its own process group.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the process group led by pid.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// killUsing has no portable way to find the processes of a directory.
func killUsing(string) {}

// processesUsing has no portable way to find the processes of a directory.
func processesUsing(string, bool) []int { return nil }

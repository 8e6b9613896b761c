//go:build windows

package browser

import "os/exec"

// setProcAttr leaves the command as it is: Windows has no process groups to
// set here.
func setProcAttr(*exec.Cmd) {}

// killGroup does nothing on Windows; chromedp kills the browser process.
func killGroup(int) {}

// killUsing has no way to find the processes of a directory on Windows.
func killUsing(string) {}

// processesUsing has no way to find the processes of a directory on Windows.
func processesUsing(string, bool) []int { return nil }

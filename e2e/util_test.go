package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func itoa(i int) string { return fmtInt(i) }

func fmtInt(i int) string { return strconv.Itoa(i) }

func readCmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(b), "\x00", " ")
}

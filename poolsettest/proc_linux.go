package poolsettest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procAttr puts a server this package starts in its own process group, so
// a terminal's Ctrl-C reaches only the test process, and asks the kernel to
// SIGKILL it when the thread that started it exits, so that in practice the
// server dies with a test process killed before its cleanups ran.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// childPids returns the pids of pid's children, from /proc.
func childPids(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

package poolsettest

import "syscall"

// procAttr puts a server this package starts in its own process group, so
// a terminal's Ctrl-C reaches only the test process, and asks the kernel to
// SIGKILL it when the thread that started it exits, so that in practice the
// server dies with a test process killed before its cleanups ran.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

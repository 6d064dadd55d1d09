//go:build !linux

package poolsettest

import "syscall"

// procAttr leaves the process attributes as they are: outside Linux a
// server this package started can outlive a killed test process.
func procAttr() *syscall.SysProcAttr { return nil }

// childPids finds no children outside Linux: signals reach the server's
// main process only.
func childPids(int) []int { return nil }

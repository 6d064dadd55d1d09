//go:build !linux

package poolsettest

import "syscall"

// procAttr leaves the process attributes as they are: outside Linux a
// server this package started can outlive a killed test process.
func procAttr() *syscall.SysProcAttr { return nil }

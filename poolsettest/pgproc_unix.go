//go:build unix

package poolsettest

import (
	"errors"
	"syscall"
)

// The signals PGInstance sends.
const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
	sigKill = syscall.SIGKILL
)

// signalServer sends sig to a PostgreSQL server: its postmaster pid and
// the postmaster's children (backends, WAL sender and receiver, ...), each
// of which is in a session of its own (setsid), so that a signal to the
// process group would miss them. Any other signal than SIGCONT first stops
// the postmaster, so that it forks no child the list misses, then reaches
// the children, then the postmaster; SIGCONT reaches it last.
func signalServer(pid int, sig syscall.Signal) error {
	if sig == syscall.SIGCONT {
		for _, c := range childPids(pid) {
			_ = syscall.Kill(c, sig)
		}
		return syscall.Kill(pid, sig)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return noSuchProcess(err)
	}
	for _, c := range childPids(pid) {
		_ = syscall.Kill(c, sig)
	}
	return noSuchProcess(syscall.Kill(pid, sig))
}

// noSuchProcess returns nil for a process that has exited already.
func noSuchProcess(err error) error {
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// asOwner makes a the attributes of a command run as o (nil: as the
// process's own user).
func asOwner(a *syscall.SysProcAttr, o *pgOwner) *syscall.SysProcAttr {
	if o == nil {
		return a
	}
	if a == nil {
		a = &syscall.SysProcAttr{}
	}
	a.Credential = &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.gid)}
	return a
}

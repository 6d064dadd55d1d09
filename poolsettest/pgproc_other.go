//go:build !unix

package poolsettest

import (
	"errors"
	"syscall"
)

// The signals PGInstance sends: none outside Unix.
const (
	sigStop = syscall.Signal(-1)
	sigCont = syscall.Signal(-2)
	sigKill = syscall.Signal(-3)
)

// signalServer is not supported outside Unix.
func signalServer(int, syscall.Signal) error {
	return errors.New("poolsettest: signals to PostgreSQL servers need Unix")
}

// asOwner leaves a as it is: outside Unix there is no user to switch to.
func asOwner(a *syscall.SysProcAttr, _ *pgOwner) *syscall.SysProcAttr { return a }

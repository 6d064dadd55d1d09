package poolsettest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGPair: a PostgreSQL primary and its streaming standbys, each a
// PGInstance (pginstance.go), for the tests that stop, pause, kill or
// hold back a standby.

// PostgresBinDir is where StartPostgresPair looks for initdb, postgres and
// pg_basebackup first; POOLSET_TEST_PG_BINDIR overrides it.
const PostgresBinDir = "/usr/lib/postgresql/15/bin"

// PGPair is a PostgreSQL primary (wal_level=replica) and standbys made
// from it with pg_basebackup -R, which stream its WAL over TCP as hot
// standbys. Every server listens on 127.0.0.1 only, with trust
// authentication for user postgres. Its methods are safe for concurrent
// use.
type PGPair struct {
	Primary  *PGInstance
	Standbys []*PGInstance
}

// StartPostgresPair starts a primary and n >= 0 standbys of it, each in a
// new directory under dir (dir/primary, dir/standby-1, ...) on a free port
// of 127.0.0.1. It runs initdb for the primary, creates database db on it
// (unless db is empty), then copies the primary with pg_basebackup -R for
// each standby and waits until every standby's WAL receiver streams, so db
// exists everywhere.
//
// When the process runs as root, the servers and tools run as the user
// postgres (the process's credentials are switched at exec, so Pid is the
// server's own pid) and the directories are made over to it; dir and its
// parents must then let postgres through (StartPostgresPair makes dir
// mode 0711). The servers log to dir/NAME/server.log at log_min_messages
// debug1 with log_connections and log_disconnections on, so that a client
// gone without a goodbye leaves "unexpected EOF on client connection" or
// "could not receive data from client" there (LogContains).
//
// It blocks until the pair is ready, ctx is done, or 60 s have passed; on
// error it stops whatever it started. The caller owns the PGPair and must
// call Stop; the servers get SIGKILL when a test process is killed before
// it can (Linux).
func StartPostgresPair(ctx context.Context, dir, db string, n int) (*PGPair, error) {
	if n < 0 {
		return nil, fmt.Errorf("poolsettest: start postgres pair: %d standbys, want 0 or more", n)
	}
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	owner, err := postgresOwner()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("poolsettest: postgres pair: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("poolsettest: postgres pair: %w", err)
	}
	p := &PGPair{}
	ok := false
	defer func() {
		if !ok {
			_ = p.Stop()
		}
	}()
	p.Primary, err = newPGInstance(dir, "primary", bin, owner)
	if err != nil {
		return nil, err
	}
	if err := p.Primary.run(ctx, "initdb", "-D", p.Primary.DataDir, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, err
	}
	if err := p.Primary.boot(ctx); err != nil {
		return nil, err
	}
	if db != "" {
		if err := p.Primary.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
			return nil, err
		}
	}
	for k := 1; k <= n; k++ {
		if _, err := p.addStandby(ctx, k); err != nil {
			return nil, err
		}
	}
	ok = true
	return p, nil
}

// addStandby copies the primary into standby-k and starts it streaming.
func (p *PGPair) addStandby(ctx context.Context, k int) (*PGInstance, error) {
	s, err := newPGInstance(filepath.Dir(p.Primary.Dir), "standby-"+strconv.Itoa(k), p.Primary.bin, p.Primary.owner)
	if err != nil {
		return nil, err
	}
	s.standby = true
	if err := s.run(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Primary.Port), "-U", "postgres",
		"-D", s.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
		return nil, err
	}
	if err := s.boot(ctx); err != nil {
		return nil, err
	}
	p.Standbys = append(p.Standbys, s)
	if err := s.WaitStreaming(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Stop stops every instance, standbys first, as PGInstance.Stop does, and
// returns their errors joined. It is idempotent.
func (p *PGPair) Stop() error {
	var errs []error
	for k := len(p.Standbys) - 1; k >= 0; k-- {
		errs = append(errs, p.Standbys[k].Stop())
	}
	if p.Primary != nil {
		errs = append(errs, p.Primary.Stop())
	}
	return errors.Join(errs...)
}

// WaitCaughtUp blocks until standby s has replayed the primary's WAL up to
// its position when WaitCaughtUp is called, or ctx is done. A standby
// whose replay is paused (PauseReplay) makes it wait for ctx.
func (p *PGPair) WaitCaughtUp(ctx context.Context, s *PGInstance) error {
	var pos string
	if err := p.Primary.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text", &pos); err != nil {
		return err
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		var done bool
		err := s.QueryRow(ctx, "SELECT COALESCE(pg_last_wal_replay_lsn() >= '"+pos+"'::pg_lsn, false)", &done)
		if err == nil && done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("poolsettest: wait for %s to replay %s: %w (last: %v)", s.Name, pos, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// PostgresPair starts a primary and n standbys, as StartPostgresPair does,
// in a new temporary directory, and registers their Stop and the
// directory's removal with tb.Cleanup. It skips tb (see Skip) when the
// PostgreSQL binaries are missing, and fails tb when the pair does not
// start. It blocks up to about 60 s.
func PostgresPair(tb testing.TB, db string, standbys int) *PGPair {
	tb.Helper()
	if _, err := postgresBinDir(); err != nil {
		Skip(tb, "%v", err)
		return nil
	}
	// Not tb.TempDir: its parent is mode 0700, which user postgres cannot
	// pass.
	dir, err := os.MkdirTemp("", "poolset-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	p, err := StartPostgresPair(tb.Context(), dir, db, standbys)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// postgresBinDir returns the directory of initdb, postgres and
// pg_basebackup.
func postgresBinDir() (string, error) {
	dir := envOr("POOLSET_TEST_PG_BINDIR", PostgresBinDir)
	for _, b := range []string{"initdb", "postgres", "pg_basebackup"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("poolsettest: PostgreSQL binaries: %w (set POOLSET_TEST_PG_BINDIR)", err)
		}
	}
	return dir, nil
}

// pgOwner is the user the servers run as: nil for the process's own.
type pgOwner struct {
	uid, gid int
}

// postgresOwner returns user postgres when the process runs as root (which
// PostgreSQL refuses to run as), nil otherwise.
func postgresOwner() (*pgOwner, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("poolsettest: running as root, PostgreSQL needs user postgres: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("poolsettest: user postgres: %w", err)
	}
	return &pgOwner{uid: uid, gid: gid}, nil
}

// chown makes path o's.
func (o *pgOwner) chown(path string) error {
	if o == nil {
		return nil
	}
	return os.Chown(path, o.uid, o.gid)
}

// run runs one of the PostgreSQL tools as i's owner, in i.Dir.
func (i *PGInstance) run(ctx context.Context, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(i.bin, tool), args...)
	cmd.Dir = i.Dir
	cmd.SysProcAttr = asOwner(procAttr(), i.owner)
	cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("poolsettest: %s %s: %w\n%s", i.Name, tool, err, tail(out))
	}
	return nil
}

package poolsettest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset/mysql"
)

// Pair: a primary and its replicas, with replication set up and waited
// for.

// Pair is a primary with a binlog (server id 1) and one or more replicas of
// it (server ids 2, 3, ...) that replicate with MASTER_USE_GTID=slave_pos.
// Replicas are read_only and keep their own binlog with log_slave_updates,
// so one can be promoted.
//
// Pair's methods are safe for concurrent use, but AddReplica appends to
// Replicas: read Replicas only where no AddReplica runs at the same time.
type Pair struct {
	Primary  *Instance
	Replicas []*Instance

	dir      string // parent of the instances' data directories
	template string // data directory made by mariadb-install-db, never started
	bin      string // mariadbd

	mu     sync.Mutex // guards Replicas and nextID
	nextID int        // server id of the next replica
}

// StartPair starts a primary and n >= 0 replicas (0: a primary alone, for
// a test that needs a server of its own to kill), each in a new directory
// under dir (dir/primary, dir/replica-1, ...) on a free port of 127.0.0.1. It
// creates database db on the primary (unless db is empty) and a replication
// user, points every replica at the primary with MASTER_USE_GTID=slave_pos,
// and waits until each replica's Slave_IO_Running and Slave_SQL_Running are
// Yes and it has applied all of the primary's binlog, so db exists
// everywhere.
//
// StartPair runs mariadb-install-db once, into dir/template, and copies that
// for each instance. It blocks until the pair is ready, ctx is done, or 60 s
// have passed; on error it stops whatever it started. The caller owns the
// Pair and must call Stop; the processes outlive a test process that is
// killed before it can (on Linux they get SIGKILL when it exits).
func StartPair(ctx context.Context, dir string, db string, n int) (*Pair, error) {
	if n < 0 {
		return nil, fmt.Errorf("poolsettest: start pair: %d replicas, want 0 or more", n)
	}
	bin, installDB, err := mariaDBBinaries()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()

	p := &Pair{dir: dir, template: filepath.Join(dir, "template"), bin: bin, nextID: 2}
	if err := installTemplate(ctx, installDB, p.template); err != nil {
		return nil, err
	}
	p.Primary, err = p.newInstance("primary", 1, true)
	if err != nil {
		return nil, err
	}
	for r := 1; r <= n; r++ {
		inst, err := p.newInstance("replica-"+strconv.Itoa(r), p.nextID, false)
		if err != nil {
			return nil, err
		}
		p.Replicas = append(p.Replicas, inst)
		p.nextID++
	}

	ok := false
	defer func() {
		if !ok {
			_ = p.Stop()
		}
	}()
	all := append([]*Instance{p.Primary}, p.Replicas...)
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for k, inst := range all {
		wg.Go(func() { errs[k] = inst.boot(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	setup := []string{
		fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'127.0.0.1' IDENTIFIED BY '%s'", replUser, replPassword),
		fmt.Sprintf("GRANT REPLICATION SLAVE ON *.* TO '%s'@'127.0.0.1'", replUser),
	}
	if db != "" {
		setup = append(setup, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(db))
	}
	if err := p.Primary.exec(ctx, setup...); err != nil {
		return nil, err
	}
	for _, r := range p.Replicas {
		if err := p.follow(ctx, r); err != nil {
			return nil, err
		}
	}
	ok = true
	return p, nil
}

// Stop stops every instance, replicas first and the primary last, as
// Instance.Stop does, and returns all of their errors joined. It blocks until
// all have exited (up to 30 s each) and is idempotent.
func (p *Pair) Stop() error {
	p.mu.Lock()
	replicas := append([]*Instance(nil), p.Replicas...)
	p.mu.Unlock()
	var errs []error
	for k := len(replicas) - 1; k >= 0; k-- {
		errs = append(errs, replicas[k].Stop())
	}
	if p.Primary != nil {
		errs = append(errs, p.Primary.Stop())
	}
	return errors.Join(errs...)
}

// WaitCaughtUp blocks until replica r's gtid_slave_pos covers the primary's
// gtid_binlog_pos as read when WaitCaughtUp is called, or ctx is done. It
// returns early with an error when r's SQL thread stops on an error; a SQL
// thread stopped by StopSQLThread makes it wait for ctx.
func (p *Pair) WaitCaughtUp(ctx context.Context, r *Instance) error {
	var pos string
	err := p.Primary.withConn(ctx, func(c *sql.Conn) error {
		return c.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos)
	})
	if err != nil {
		return fmt.Errorf("poolsettest: wait for %s: read primary position: %w", r.Name, err)
	}
	if pos == "" {
		return nil
	}
	return r.withConn(ctx, func(c *sql.Conn) error {
		for {
			var res sql.NullInt64
			err := c.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 1)", pos).Scan(&res)
			if err == nil && res.Valid && res.Int64 == 0 {
				return nil
			}
			st, _ := mysql.ReplicaStatus(ctx, c)
			if ctx.Err() != nil || err != nil {
				return fmt.Errorf("poolsettest: wait for %s to reach %s: %w (%s)", r.Name, pos, errors.Join(ctx.Err(), err), st)
			}
			if st["Slave_SQL_Running"] != "Yes" && st["Last_SQL_Errno"] != "" && st["Last_SQL_Errno"] != "0" {
				return fmt.Errorf("poolsettest: wait for %s to reach %s: SQL thread stopped: %s", r.Name, pos, st)
			}
		}
	})
}

// MariaDBPair starts a primary and n replicas, as StartPair does, in
// tb.TempDir(), and registers their Stop with tb.Cleanup. It skips tb
// (see Skip) when mariadbd or mariadb-install-db is missing, and fails tb
// when the pair does not start. It blocks up to about 60 s.
func MariaDBPair(tb testing.TB, db string, replicas int) *Pair {
	tb.Helper()
	if _, _, err := mariaDBBinaries(); err != nil {
		Skip(tb, "%v", err)
		return nil
	}
	p, err := StartPair(tb.Context(), tb.TempDir(), db, replicas)
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

// newInstance copies the template into p.dir/name and picks a free port. It
// starts nothing.
func (p *Pair) newInstance(name string, id int, primary bool) (*Instance, error) {
	dir := filepath.Join(p.dir, name)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("poolsettest: new %s: %s already exists", name, dir)
	}
	if err := os.CopyFS(dir, os.DirFS(p.template)); err != nil {
		return nil, fmt.Errorf("poolsettest: new %s: copy data directory: %w", name, err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("poolsettest: new %s: %w", name, err)
	}
	tmp, err := privateTmpdir(dir)
	if err != nil {
		return nil, fmt.Errorf("poolsettest: new %s: %w", name, err)
	}
	return &Instance{
		Name:     name,
		Port:     port,
		Dir:      dir,
		Socket:   filepath.Join(dir, "mysqld.sock"),
		ServerID: id,
		bin:      p.bin,
		primary:  primary,
		logPath:  filepath.Join(dir, "error.log"),
		tmpDir:   tmp,
		server:   server{name: name, send: func(p *process, sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }},
	}, nil
}

// follow points replica r at the primary, starts replication, and waits
// until both replication threads run and r has caught up.
func (p *Pair) follow(ctx context.Context, r *Instance) error {
	err := r.exec(ctx,
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
			p.Primary.Port, replUser, replPassword),
		"START SLAVE",
	)
	if err != nil {
		return err
	}
	err = r.withConn(ctx, func(c *sql.Conn) error {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			st, err := mysql.ReplicaStatus(ctx, c)
			if err == nil && st["Slave_IO_Running"] == "Yes" && st["Slave_SQL_Running"] == "Yes" {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("poolsettest: %s: replication not running: %w (%s)", r.Name, errors.Join(ctx.Err(), err), st)
			case <-t.C:
			}
		}
	})
	if err != nil {
		return err
	}
	return p.WaitCaughtUp(ctx, r)
}

// quoteIdent quotes a MariaDB identifier with backticks.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

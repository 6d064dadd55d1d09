package poolsettest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/poolset/poolset/mysql" // also registers the "mysql" driver for sql.Open
)

// Instance: one mariadbd of a test's own, started, stopped, killed,
// paused and resumed as the tests that prove a close or a failover need.

// Limits of the MariaDB helpers. StartPair and AddReplica give up after
// setupTimeout, Start after startTimeout, and Stop sends SIGKILL after
// stopTimeout.
const (
	setupTimeout = 60 * time.Second
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
	pollInterval = 100 * time.Millisecond
)

// The replication account that StartPair creates on the primary. It is
// replicated, so a promoted replica has it too.
const (
	replUser     = "repl"
	replPassword = "repl"
)

// Instance is one mariadbd started by this package, listening on 127.0.0.1
// only, where root has no password. Its methods are safe for concurrent use;
// Start, Stop and Kill are serialized.
type Instance struct {
	Name     string // "primary", "replica-1", ...
	Port     int    // TCP port on 127.0.0.1
	Dir      string // data directory; the error log is Dir/error.log, the tmpdir Dir+".tmp"
	Socket   string // unix socket, Dir/mysqld.sock
	ServerID int    // 1 for the primary, 2, 3, ... for replicas

	bin     string // mariadbd
	primary bool
	logPath string
	tmpDir  string // --tmpdir, of this instance alone (see privateTmpdir)

	server // the mariadbd process
}

// DSN returns the go-sql-driver/mysql DSN of root over TCP on database db,
// "root@tcp(127.0.0.1:PORT)/db". An empty db connects without a default
// database.
func (i *Instance) DSN(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s", i.Port, db)
}

// Start starts mariadbd again after Stop or Kill, with the same data
// directory and port, and blocks until it accepts connections, ctx is done,
// or 60 s have passed. A replica resumes replication by itself. Start
// returns an error if the instance is already running.
func (i *Instance) Start(ctx context.Context) error {
	i.life.Lock()
	defer i.life.Unlock()
	return i.start(ctx)
}

// Stop shuts mariadbd down cleanly: it sends SIGTERM to its pid and waits up
// to 30 s for it to exit, then sends SIGKILL and returns an error saying so.
// Stop blocks until the process has exited. It is idempotent and returns nil
// when the instance is not running.
func (i *Instance) Stop() error { return i.stop(syscall.SIGTERM, "SIGTERM") }

// Kill sends SIGKILL to mariadbd, as a crash would, and blocks until the
// process has exited. It is idempotent and returns nil when the instance is
// not running.
func (i *Instance) Kill() error { return i.kill() }

// Pause stops mariadbd with SIGSTOP, as a hung server: the kernel still
// accepts TCP connections to its port, but nothing answers on them until
// Resume. It returns an error when the instance is not running. Stop and
// Kill end a paused instance too.
func (i *Instance) Pause() error { return i.signal(syscall.SIGSTOP, "pause") }

// Resume continues a mariadbd stopped by Pause with SIGCONT.
func (i *Instance) Resume() error { return i.signal(syscall.SIGCONT, "resume") }

// StopSQLThread runs STOP SLAVE SQL_THREAD on the replica: it keeps fetching
// the primary's binlog but applies nothing until StartSQLThread.
func (i *Instance) StopSQLThread(ctx context.Context) error {
	return i.exec(ctx, "STOP SLAVE SQL_THREAD")
}

// StartSQLThread runs START SLAVE SQL_THREAD on the replica.
func (i *Instance) StartSQLThread(ctx context.Context) error {
	return i.exec(ctx, "START SLAVE SQL_THREAD")
}

// ReplicaStatus returns the replica's SHOW SLAVE STATUS by column name
// (mysql.ReplicaStatus), or nil when the instance replicates nothing.
func (i *Instance) ReplicaStatus(ctx context.Context) (map[string]string, error) {
	var st map[string]string
	err := i.withConn(ctx, func(c *sql.Conn) error {
		var err error
		st, err = mysql.ReplicaStatus(ctx, c)
		return err
	})
	return st, err
}

// AddReplica starts one more replica of the primary, named replica-N, and
// blocks, like StartPair, until it replicates and has caught up, ctx is done,
// or 60 s have passed. The new replica starts from an empty data directory and
// replays the primary's whole binlog. On success it is appended to Replicas
// and Stop stops it.
func (p *Pair) AddReplica(ctx context.Context) (*Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	p.mu.Lock()
	id := p.nextID
	p.nextID++
	name := "replica-" + strconv.Itoa(id-1)
	p.mu.Unlock()

	r, err := p.newInstance(name, id, false)
	if err != nil {
		return nil, err
	}
	if err := r.boot(ctx); err != nil {
		return nil, err
	}
	if err := p.follow(ctx, r); err != nil {
		_ = r.Stop()
		return nil, err
	}
	p.mu.Lock()
	p.Replicas = append(p.Replicas, r)
	p.mu.Unlock()
	return r, nil
}

// boot is the first start of a new instance. If another process took the
// port between FreePort and mariadbd's bind, it retries on another port.
func (i *Instance) boot(ctx context.Context) error {
	i.life.Lock()
	defer i.life.Unlock()
	for attempt := 0; ; attempt++ {
		err := i.start(ctx)
		if err == nil || attempt == 2 || !strings.Contains(err.Error(), "Address already in use") {
			return err
		}
		port, perr := FreePort()
		if perr != nil {
			return errors.Join(err, perr)
		}
		i.Port = port
	}
}

// start starts mariadbd and waits until it answers a ping. i.life must be
// held.
func (i *Instance) start(ctx context.Context) error {
	if i.Running() {
		return fmt.Errorf("poolsettest: start %s: already running", i.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	logf, err := os.OpenFile(i.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("poolsettest: start %s: %w", i.Name, err)
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, io.SeekEnd)

	cmd := exec.Command(i.bin, i.args()...)
	cmd.Dir = i.Dir
	cmd.Stdout = logf // mariadbd writes to stderr only until it opens --log-error.
	cmd.Stderr = logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("poolsettest: start %s: %w", i.Name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { // Ends when mariadbd exits; Stop and Kill wait for it.
		p.err = cmd.Wait()
		close(p.done)
	}()
	i.setCurrent(p)

	if err := i.waitReady(ctx, p); err != nil {
		if !p.exited() {
			_ = cmd.Process.Kill()
			<-p.done
		}
		return fmt.Errorf("poolsettest: start %s on port %d: %w; %s:\n%s", i.Name, i.Port, err, i.logPath, i.logTail(offset))
	}
	return nil
}

// waitReady pings i every 100 ms until a ping succeeds, the process exits,
// or ctx is done. A server that answers must have i.Dir as its datadir, so
// another server that took the port is not mistaken for i.
func (i *Instance) waitReady(ctx context.Context, p *process) error {
	db, err := sql.Open("mysql", i.DSN("")+"?timeout=1s&readTimeout=2s&writeTimeout=2s")
	if err != nil {
		return err
	}
	defer db.Close()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		var datadir string
		pingErr := db.QueryRowContext(ctx, "SELECT @@datadir").Scan(&datadir)
		if pingErr == nil {
			if !sameDir(datadir, i.Dir) {
				return fmt.Errorf("port %d is served by another server, with datadir %s", i.Port, datadir)
			}
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("mariadbd exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last ping: %v)", ctx.Err(), pingErr)
		case <-t.C:
		}
	}
}

// exec runs the statements in order on one root connection without a
// default database.
func (i *Instance) exec(ctx context.Context, stmts ...string) error {
	return i.withConn(ctx, func(c *sql.Conn) error {
		for _, s := range stmts {
			if _, err := c.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("poolsettest: %s: %s: %w", i.Name, s, err)
			}
		}
		return nil
	})
}

// withConn calls f with a new root connection to i and closes it afterwards.
func (i *Instance) withConn(ctx context.Context, f func(*sql.Conn) error) error {
	db, err := sql.Open("mysql", i.DSN("")+"?timeout=5s")
	if err != nil {
		return fmt.Errorf("poolsettest: %s: %w", i.Name, err)
	}
	defer db.Close()
	c, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("poolsettest: %s: connect: %w", i.Name, err)
	}
	defer c.Close()
	return f(c)
}

// logTail returns the last lines that mariadbd wrote to its error log after
// offset.
func (i *Instance) logTail(offset int64) string {
	b, err := os.ReadFile(i.logPath)
	if err != nil {
		return err.Error()
	}
	if offset > 0 && offset <= int64(len(b)) {
		b = b[offset:]
	}
	return tail(b)
}

// sameDir reports whether paths a and b name the same existing directory.
func sameDir(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

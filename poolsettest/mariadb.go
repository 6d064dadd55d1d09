package poolsettest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset/mysql" // also registers the "mysql" driver for sql.Open
)

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

// innodbOptions keep an instance small. mariadb-install-db and mariadbd must
// agree on the data file layout, so both get them.
var innodbOptions = []string{
	"--skip-name-resolve",
	"--performance-schema=off",
	"--innodb-buffer-pool-size=32M",
	"--innodb-log-file-size=8M",
	"--innodb-data-file-path=ibdata1:10M:autoextend",
	"--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
}

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

	life sync.Mutex // serializes Start, Stop and Kill
	mu   sync.Mutex // guards proc
	proc *process
}

// process is one run of mariadbd. done is closed, after err is set, when the
// goroutine that waits for the process returns.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// DSN returns the go-sql-driver/mysql DSN of root over TCP on database db,
// "root@tcp(127.0.0.1:PORT)/db". An empty db connects without a default
// database.
func (i *Instance) DSN(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s", i.Port, db)
}

// Pid returns the process id of the running mariadbd, or 0 when it is not
// running: for stopping it with SIGSTOP by hand (see Pause).
func (i *Instance) Pid() int {
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the instance's mariadbd process has been started
// and has not exited.
func (i *Instance) Running() bool {
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	return p != nil && !p.exited()
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
func (i *Instance) Stop() error {
	i.life.Lock()
	defer i.life.Unlock()
	p := i.current()
	if p == nil || p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			<-p.done
			return nil
		}
		return fmt.Errorf("poolsettest: stop %s: %w", i.Name, err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused server takes the SIGTERM only once continued
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("poolsettest: stop %s: no exit %v after SIGTERM; sent SIGKILL", i.Name, stopTimeout)
}

// Kill sends SIGKILL to mariadbd, as a crash would, and blocks until the
// process has exited. It is idempotent and returns nil when the instance is
// not running.
func (i *Instance) Kill() error {
	i.life.Lock()
	defer i.life.Unlock()
	p := i.current()
	if p == nil || p.exited() {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("poolsettest: kill %s: %w", i.Name, err)
	}
	<-p.done
	return nil
}

// Pause stops mariadbd with SIGSTOP, as a hung server: the kernel still
// accepts TCP connections to its port, but nothing answers on them until
// Resume. It returns an error when the instance is not running. Stop and
// Kill end a paused instance too.
func (i *Instance) Pause() error { return i.signal(syscall.SIGSTOP, "pause") }

// Resume continues a mariadbd stopped by Pause with SIGCONT.
func (i *Instance) Resume() error { return i.signal(syscall.SIGCONT, "resume") }

func (i *Instance) signal(sig syscall.Signal, op string) error {
	i.life.Lock()
	defer i.life.Unlock()
	p := i.current()
	if p == nil || p.exited() {
		return fmt.Errorf("poolsettest: %s %s: not running", op, i.Name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("poolsettest: %s %s: %w", op, i.Name, err)
	}
	return nil
}

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

// mariaDBBinaries finds mariadbd and mariadb-install-db in PATH or in the
// directories where distributions put them.
func mariaDBBinaries() (server, installDB string, err error) {
	server, err = lookBin("mariadbd")
	if err != nil {
		return "", "", err
	}
	installDB, err = lookBin("mariadb-install-db", "mysql_install_db")
	return server, installDB, err
}

func lookBin(names ...string) (string, error) {
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/libexec", "/usr/local/mysql/bin"} {
			p := filepath.Join(d, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("poolsettest: %s not found in PATH or /usr/sbin, /usr/bin, /usr/local/{sbin,bin}, /usr/libexec", names[0])
}

// userOptions returns --user=root when running as root: mariadbd refuses to
// run as root unless told so explicitly. Running as root rather than as
// mysql keeps the data directory usable under a parent that only root may
// enter, such as the one tb.TempDir creates.
func userOptions() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// privateTmpdir creates and returns the temporary directory of the server
// whose data directory is dir: dir's sibling dir+".tmp". Every mariadbd,
// the one mariadb-install-db runs included, deletes at startup all files
// named #sql* in its tmpdir, as temporary tables left by a crash of its
// own; with the default tmpdir (/tmp) shared, each server the tests start
// deleted the live temporary tables of every other server on the machine,
// and a concurrent mariadb-install-db then failed with "Unknown table
// 'mysql.tmp_user_sys'".
func privateTmpdir(dir string) (string, error) {
	tmp := dir + ".tmp"
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", err
	}
	return tmp, nil
}

// installTemplate runs mariadb-install-db into dir, which must not exist,
// with a tmpdir of its own. root@localhost, root@127.0.0.1 and root@::1 get
// no password.
func installTemplate(ctx context.Context, installDB, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("poolsettest: install %s: already exists", dir)
	}
	tmp, err := privateTmpdir(dir)
	if err != nil {
		return fmt.Errorf("poolsettest: install %s: %w", dir, err)
	}
	args := append([]string{"--no-defaults"}, userOptions()...)
	args = append(args,
		"--datadir="+dir,
		"--tmpdir="+tmp,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
	)
	args = append(args, innodbOptions...)
	out, err := exec.CommandContext(ctx, installDB, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("poolsettest: %s: %w\n%s%s", filepath.Base(installDB), err, errorLines(out), tail(out))
	}
	return nil
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
	i.mu.Lock()
	i.proc = p
	i.mu.Unlock()

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

// args are mariadbd's options for i. The socket is relative to the data
// directory, which is mariadbd's working directory, so a long Dir cannot
// exceed the 107-byte limit on socket paths.
func (i *Instance) args() []string {
	a := append([]string{"--no-defaults"}, userOptions()...)
	a = append(a,
		"--datadir="+i.Dir,
		"--bind-address=127.0.0.1",
		"--port="+strconv.Itoa(i.Port),
		"--socket=mysqld.sock",
		"--pid-file="+filepath.Join(i.Dir, "mariadbd.pid"),
		"--log-error="+i.logPath,
		"--tmpdir="+i.tmpDir,
		"--server-id="+strconv.Itoa(i.ServerID),
		"--log-bin=mysql-bin",
		"--binlog-format=ROW",
		"--innodb-flush-log-at-trx-commit=2", // survives SIGKILL, not an OS crash
		"--innodb-doublewrite=0",
		"--max-connections=100",
	)
	a = append(a, innodbOptions...)
	if !i.primary {
		a = append(a,
			"--read-only=1",
			"--relay-log=relay-bin",
			"--log-slave-updates=1",
			"--slave-net-timeout=10",
		)
	}
	return a
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

func (i *Instance) current() *process {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.proc
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
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

// errorLines returns the lines of b that report an error, each ending in a
// newline: a failed mariadb-install-db prints its reason first, above 20
// lines of advice that tail alone would show.
func errorLines(b []byte) string {
	var out strings.Builder
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(line, []byte("ERROR")) {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.String()
}

// tail returns the last 20 lines of b.
func tail(b []byte) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return string(bytes.Join(lines, []byte("\n")))
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

// quoteIdent quotes a MariaDB identifier with backticks.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

package poolsettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGInstance: one PostgreSQL server of a test's own, started, stopped,
// killed, paused and resumed as the tests of standbys need.

// PGInstance is one PostgreSQL server (postmaster and its backends)
// started by StartPostgresPair. Its methods are safe for concurrent use;
// Start, Stop, Kill, Pause and Resume are serialized.
type PGInstance struct {
	Name    string // "primary", "standby-1", ...
	Port    int    // TCP port on 127.0.0.1
	Dir     string // the instance's directory: its socket and server.log
	DataDir string // Dir/data
	LogPath string // Dir/server.log: everything the server logs

	bin     string // PostgreSQL's bin directory
	owner   *pgOwner
	standby bool

	server // the postmaster and its backends
}

// newPGInstance makes dir/name, owned by owner, and picks a free port. It
// starts nothing.
func newPGInstance(dir, name, bin string, owner *pgOwner) (*PGInstance, error) {
	d := filepath.Join(dir, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		return nil, fmt.Errorf("poolsettest: new %s: %w", name, err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("poolsettest: new %s: %w", name, err)
	}
	i := &PGInstance{Name: name, Port: port, Dir: d, DataDir: filepath.Join(d, "data"),
		LogPath: filepath.Join(d, "server.log"), bin: bin, owner: owner,
		server: server{name: name, send: func(p *process, sig syscall.Signal) error { return signalServer(p.cmd.Process.Pid, sig) }}}
	f, err := os.OpenFile(i.LogPath, os.O_WRONLY|os.O_CREATE, 0o644)
	if err == nil {
		f.Close()
		err = errors.Join(owner.chown(d), owner.chown(i.LogPath))
	}
	if err != nil {
		return nil, fmt.Errorf("poolsettest: new %s: %w", name, err)
	}
	return i, nil
}

// DSN returns the URL of user postgres on database db over TCP,
// postgres://postgres@127.0.0.1:PORT/db?sslmode=disable.
func (i *PGInstance) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", i.Port, db)
}

// Start starts the server again after Stop or Kill, on the same data
// directory and port, and blocks until it accepts connections, ctx is
// done, or 60 s have passed. A standby streams again by itself (see
// WaitStreaming). It returns an error if the server is running.
func (i *PGInstance) Start(ctx context.Context) error {
	i.life.Lock()
	defer i.life.Unlock()
	return i.start(ctx)
}

// Stop shuts the server down (fast shutdown: SIGINT to the postmaster,
// which ends its sessions cleanly), continuing it if paused, and waits up
// to 30 s for it to exit; then it sends SIGKILL and returns an error
// saying so. It is idempotent.
func (i *PGInstance) Stop() error { return i.stop(syscall.SIGINT, "SIGINT") }

// Kill sends SIGKILL to the server (the postmaster and every backend), as
// a crash of the machine would, and waits for the postmaster to exit. It is idempotent.
func (i *PGInstance) Kill() error { return i.kill() }

// Pause stops the server (the postmaster and every backend) with SIGSTOP,
// as a hung server: the kernel still accepts TCP connections, but nothing answers
// until Resume. Stop and Kill end a paused server too.
func (i *PGInstance) Pause() error { return i.signal(sigStop, "pause") }

// Resume continues a server stopped by Pause with SIGCONT.
func (i *PGInstance) Resume() error { return i.signal(sigCont, "resume") }

// PauseReplay pauses the standby's WAL replay (pg_wal_replay_pause): it
// keeps receiving the primary's WAL but applies none until ResumeReplay.
func (i *PGInstance) PauseReplay(ctx context.Context) error {
	return i.Exec(ctx, "SELECT pg_wal_replay_pause()")
}

// ResumeReplay resumes the standby's WAL replay (pg_wal_replay_resume).
func (i *PGInstance) ResumeReplay(ctx context.Context) error {
	return i.Exec(ctx, "SELECT pg_wal_replay_resume()")
}

// WaitStreaming blocks until the standby's WAL receiver streams from the
// primary (pg_stat_wal_receiver), or ctx is done.
func (i *PGInstance) WaitStreaming(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		var status string
		err := i.QueryRow(ctx, "SELECT COALESCE((SELECT status FROM pg_stat_wal_receiver), 'none')", &status)
		if err == nil && status == "streaming" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("poolsettest: %s not streaming: %w (status %q, %v)", i.Name, ctx.Err(), status, err)
		case <-t.C:
		}
	}
}

// Exec runs the statements in order on one connection to database
// postgres as user postgres.
func (i *PGInstance) Exec(ctx context.Context, stmts ...string) error {
	return i.withConn(ctx, func(c *pgx.Conn) error {
		for _, s := range stmts {
			if _, err := c.Exec(ctx, s); err != nil {
				return fmt.Errorf("poolsettest: %s: %s: %w", i.Name, s, err)
			}
		}
		return nil
	})
}

// QueryRow runs query on a connection to database postgres and scans its
// one row into dest.
func (i *PGInstance) QueryRow(ctx context.Context, query string, dest ...any) error {
	return i.withConn(ctx, func(c *pgx.Conn) error {
		if err := c.QueryRow(ctx, query).Scan(dest...); err != nil {
			return fmt.Errorf("poolsettest: %s: %s: %w", i.Name, query, err)
		}
		return nil
	})
}

func (i *PGInstance) withConn(ctx context.Context, f func(*pgx.Conn) error) error {
	c, err := pgx.Connect(ctx, i.DSN("postgres")+"&connect_timeout=5&application_name=poolsettest")
	if err != nil {
		return fmt.Errorf("poolsettest: %s: connect: %w", i.Name, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	return f(c)
}

// LogSize returns the server log's size now, for LogSince.
func (i *PGInstance) LogSize() int64 {
	st, err := os.Stat(i.LogPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogSince returns what the server logged after offset (a LogSize).
func (i *PGInstance) LogSince(offset int64) string {
	b, err := os.ReadFile(i.LogPath)
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// AbruptDisconnects returns the lines PostgreSQL logs for a client gone
// without a goodbye ("unexpected EOF on client connection", "could not
// receive data from client") in what the server logged after offset.
func (i *PGInstance) AbruptDisconnects(offset int64) []string {
	var out []string
	for _, l := range strings.Split(i.LogSince(offset), "\n") {
		if strings.Contains(l, "unexpected EOF on client connection") || strings.Contains(l, "could not receive data from client") {
			out = append(out, l)
		}
	}
	return out
}

// boot is the first start of a new instance; if another process took the
// port, it retries on another.
func (i *PGInstance) boot(ctx context.Context) error {
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

// args are the server's settings, on its command line.
func (i *PGInstance) args() []string {
	a := []string{"-D", i.DataDir, "-p", strconv.Itoa(i.Port), "-k", i.Dir}
	for _, s := range []string{
		"listen_addresses=127.0.0.1", "wal_level=replica", "hot_standby=on", "max_wal_senders=10",
		"max_connections=100", "shared_buffers=16MB", "fsync=off",
		"wal_receiver_status_interval=1s", "wal_retrieve_retry_interval=200ms",
		"logging_collector=off", "log_destination=stderr", "log_line_prefix=%m [%p] %a ",
		"log_min_messages=debug1", "log_connections=on", "log_disconnections=on",
	} {
		a = append(a, "-c", s)
	}
	return a
}

// start starts the postmaster and waits until it answers. i.life must be
// held.
func (i *PGInstance) start(ctx context.Context) error {
	if i.Running() {
		return fmt.Errorf("poolsettest: start %s: already running", i.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	logf, err := os.OpenFile(i.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("poolsettest: start %s: %w", i.Name, err)
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, io.SeekEnd)

	cmd := exec.Command(filepath.Join(i.bin, "postgres"), i.args()...)
	cmd.Dir = i.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = asOwner(procAttr(), i.owner)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("poolsettest: start %s: %w", i.Name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { // Ends when the postmaster exits; Stop and Kill wait for it.
		p.err = cmd.Wait()
		close(p.done)
	}()
	i.setCurrent(p)
	if err := i.waitReady(ctx, p); err != nil {
		if !p.exited() {
			_ = signalServer(cmd.Process.Pid, sigKill)
			<-p.done
		}
		b, _ := os.ReadFile(i.LogPath)
		if offset <= int64(len(b)) {
			b = b[offset:]
		}
		return fmt.Errorf("poolsettest: start %s on port %d: %w; %s:\n%s", i.Name, i.Port, err, i.LogPath, tail(b))
	}
	return nil
}

// waitReady connects every 100 ms until the server answers with i.DataDir
// as its data directory, the postmaster exits, or ctx is done.
func (i *PGInstance) waitReady(ctx context.Context, p *process) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		var dir string
		err := i.QueryRow(ctx, "SHOW data_directory", &dir)
		if err == nil {
			if !sameDir(dir, i.DataDir) {
				return fmt.Errorf("port %d is served by another server, with data directory %s", i.Port, dir)
			}
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

package poolsettest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Installing MariaDB for the tests: the binaries, one data directory
// template that every instance copies, and the options install and server
// share.

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

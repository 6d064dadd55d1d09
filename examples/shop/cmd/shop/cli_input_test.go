package main

import (
	"strings"
	"testing"
)

// The passwords of the bad-input cases: none may ever be printed.
const (
	mysqlPassword = "S3cretPassw0rd"
	redisPassword = "R3disPassw0rd"
)

func TestBadInput(t *testing.T) {
	data := t.TempDir()
	tests := []struct {
		name string
		env  []string
		args []string
		code int // -1: any failure (not 0)
		// names are strings stderr must contain.
		names []string
		// oneLine is whether stderr must be exactly one non-empty line.
		oneLine bool
	}{
		{
			name: "malformed DSN", args: []string{"demo", "--mysql", "root:pw@tcp(127.0.0.1:3306/x"},
			code: exitUsage, names: []string{"--mysql"}, oneLine: true,
		},
		{
			name: "malformed DSN with password", args: []string{"demo", "--mysql", "root:" + mysqlPassword + "@tcp(127.0.0.1:3306/x"},
			code: exitUsage, names: []string{"--mysql", "***"}, oneLine: true,
		},
		{
			name: "unknown flag", args: []string{"demo", "--bogus"},
			code: exitUsage, names: []string{"bogus"}, oneLine: true,
		},
		{
			name: "password in a bad flag value", args: []string{"demo", "--max-open", "app:" + mysqlPassword + "@tcp(127.0.0.1:1)/shop"},
			code: exitUsage, names: []string{"max-open"}, oneLine: true,
		},
		{
			name: "bad redis URL", args: []string{"demo", "--redis", "http://x"},
			code: exitUsage, names: []string{"--redis"}, oneLine: true,
		},
		{
			name: "bad redis URL with password", args: []string{"demo", "--redis", "http://u:" + redisPassword + "@x"},
			code: exitUsage, names: []string{"--redis"}, oneLine: true,
		},
		{
			name: "max-open 0", args: []string{"demo", "--max-open", "0"},
			code: exitUsage, names: []string{"--max-open"}, oneLine: true,
		},
		{
			name: "unknown command", args: []string{"frobnicate"},
			code: exitUsage, names: []string{"frobnicate"}, oneLine: true,
		},
		{
			name: "replica without mysql", args: []string{"demo", "--data", data, "--replica", "app:" + mysqlPassword + "@tcp(127.0.0.1:1)/shop"},
			code: exitUsage, names: []string{"--replica"}, oneLine: true,
		},
		{
			name: "unreachable MySQL", args: []string{"demo", "--mysql", "app:" + mysqlPassword + "@tcp(127.0.0.1:1)/shop"},
			code: exitRuntime, names: []string{"--mysql", "***"},
		},
		{
			name: "unreachable MySQL from POOLSET_MYSQL_DSN", env: []string{"POOLSET_MYSQL_DSN=app:" + mysqlPassword + "@tcp(127.0.0.1:1)/shop"},
			args: []string{"demo"},
			code: exitRuntime, names: []string{"--mysql", "***"},
		},
		{
			name: "unreachable MySQL in migrate", args: []string{"migrate", "--mysql", "app:" + mysqlPassword + "@tcp(127.0.0.1:1)/shop"},
			code: exitRuntime, names: []string{"--mysql", "***"},
		},
		{
			// The cache is optional: a warning, and the demo runs on the
			// database alone.
			name: "unreachable redis", args: []string{"demo", "--data", data, "--duration", "100ms", "--orders", "0", "--redis", "redis://:" + redisPassword + "@127.0.0.1:1"},
			code: exitOK, names: []string{"--redis", "***", "does not answer"},
		},
		{
			name: "unreachable redis from POOLSET_REDIS_URL", env: []string{"POOLSET_REDIS_URL=redis://:" + redisPassword + "@127.0.0.1:1", "POOLSET_DATA=" + data},
			args: []string{"demo", "--duration", "100ms", "--orders", "0"},
			code: exitOK, names: []string{"--redis", "***", "does not answer"},
		},
		{
			name: "unparsable redis URL with password", args: []string{"demo", "--data", data, "--duration", "100ms", "--redis", "redis://:" + redisPassword + "%zz@127.0.0.1:1"},
			code: -1, names: []string{"--redis"}, oneLine: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runPoolset(t, tt.env, tt.args...)
			if tt.code == -1 && r.code == exitOK {
				t.Errorf("exit code: got %d; want non-zero\nstderr:\n%s", r.code, r.stderr)
			}
			if tt.code != -1 && r.code != tt.code {
				t.Errorf("exit code: got %d; want %d\nstderr:\n%s", r.code, tt.code, r.stderr)
			}
			for _, want := range tt.names {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr has no %q:\n%s", want, r.stderr)
				}
			}
			if lines := nonEmptyLines(r.stderr); tt.oneLine && len(lines) != 1 {
				t.Errorf("stderr: got %d non-empty lines; want 1:\n%s", len(lines), r.stderr)
			}
			for _, pw := range []string{mysqlPassword, redisPassword} {
				if strings.Contains(r.stdout, pw) {
					t.Errorf("stdout shows a password:\n%s", r.stdout)
				}
				if strings.Contains(r.stderr, pw) {
					t.Errorf("stderr shows a password:\n%s", r.stderr)
				}
			}
			t.Logf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
		})
	}
}

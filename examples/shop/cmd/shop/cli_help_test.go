package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelp: every subcommand, asked for -h or --help, prints its usage
// (naming the subcommand and one of its own flags) on stdout, nothing on
// stderr, and exits 0; and so does poolset itself.
func TestHelp(t *testing.T) {
	tests := []struct {
		args []string // before the help flag
		want []string // in stdout
	}{
		{[]string{"demo"}, []string{"shop demo", "-clients", "-admin", "-keep-serving"}},
		{[]string{"migrate"}, []string{"shop migrate", "-mysql"}},
		{[]string{"seed"}, []string{"shop seed", "-products"}},
		{[]string{"load"}, []string{"shop load", "-orders"}},
		{[]string{"worker"}, []string{"shop worker", "-admin", "-redis", "-keep-serving"}},
		{[]string{"verify"}, []string{"shop verify", "-expect-orders"}},
		{[]string{"bench", "sharing"}, []string{"shop bench sharing", "-clients"}},
		{[]string{"bench", "reads"}, []string{"shop bench reads", "-clients"}},
		{[]string{"bench"}, []string{"shop bench sharing|reads"}},
		{nil, []string{"shop <command>", "worker", "bench reads"}},
	}
	for _, tt := range tests {
		for _, h := range []string{"-h", "--help", "-help"} {
			args := append(tt.args[:len(tt.args):len(tt.args)], h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := run(t.Context(), nil, args, &stdout, &stderr)
				if code != exitOK {
					t.Errorf("exit code: got %d; want 0\nstderr:\n%s", code, stderr.String())
				}
				for _, w := range tt.want {
					if !strings.Contains(stdout.String(), w) {
						t.Errorf("stdout: got no %q; want the usage\nstdout:\n%s", w, stdout.String())
					}
				}
				if stderr.Len() != 0 {
					t.Errorf("stderr: got %q; want nothing", stderr.String())
				}
			})
		}
	}
	t.Run("help worker", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), nil, []string{"help", "worker"}, &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "-drain-timeout") || stderr.Len() != 0 {
			t.Errorf("shop help worker: got exit %d, stdout %q, stderr %q; want 0, the worker's flags, nothing", code, stdout.String(), stderr.String())
		}
	})
}

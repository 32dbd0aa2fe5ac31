package cli

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name           string
		args           []string
		help, usageErr bool
	}{
		{"no flags", nil, false, false},
		{"a flag and an argument", []string{"-n", "3", "ID"}, false, false},
		{"-h", []string{"-h"}, true, false},
		{"--help", []string{"--help"}, true, false},
		{"-help after a flag", []string{"-n", "3", "-help"}, true, false},
		{"-h after an argument", []string{"-n", "3", "ID", "-h"}, true, false},
		{"--help after an argument", []string{"ID", "--help"}, true, false},
		{"-h as a flag's value", []string{"ID", "-s", "-h"}, true, false},
		{"-help after --", []string{"ID", "--", "-help"}, true, false},
		{"unknown flag", []string{"-x"}, false, true},
		{"bad value", []string{"-n", "three"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("prog cmd", flag.ContinueOnError)
			fs.Int("n", 0, "how many")
			fs.String("s", "", "a string")
			var stdout, stderr bytes.Buffer
			err := Parse(fs, tc.args, &stdout, &stderr)
			var ue UsageError
			switch {
			case tc.help:
				if !errors.Is(err, ErrHelp) || !strings.HasPrefix(stdout.String(), "Usage of prog cmd:\n  -n int") || stderr.Len() != 0 {
					t.Fatalf("err %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
				}
			case tc.usageErr:
				if !errors.As(err, &ue) || !strings.Contains(stderr.String(), "Usage of prog cmd:") || stdout.Len() != 0 {
					t.Fatalf("err %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
				}
			default:
				if err != nil || stdout.Len() != 0 || stderr.Len() != 0 {
					t.Fatalf("err %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
				}
			}
		})
	}
}

func TestExit(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		says string
	}{
		{"done", nil, ExitOK, ""},
		{"help", ErrHelp, ExitOK, ""},
		{"bad usage", Usagef("-dir is required"), ExitUsage, "prog: -dir is required\n"},
		{"failure", errors.New("disk full"), ExitFailed, "prog: disk full\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := Exit("prog", tc.err, &stderr); code != tc.code || stderr.String() != tc.says {
				t.Fatalf("exit %d, said %q", code, stderr.String())
			}
		})
	}
}

// Flags after positional arguments are flags, as people write them; only
// "--" ends the flags.
func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		n    int
		rest []string
	}{
		{"flag first", []string{"-n", "3", "ID"}, 3, []string{"ID"}},
		{"flag after the argument", []string{"ID", "-n", "3"}, 3, []string{"ID"}},
		{"between arguments", []string{"A", "-n=4", "B"}, 4, []string{"A", "B"}},
		{"standard input as an argument", []string{"-", "-n", "5"}, 5, []string{"-"}},
		{"after --, arguments only", []string{"A", "--", "-n", "6"}, 0, []string{"A", "-n", "6"}},
		{"-- as a flag's value does not end the flags", []string{"-s", "--", "A", "-n", "8"}, 8, []string{"A"}},
		{"-- after a bool flag ends them", []string{"A", "-b", "--", "-n"}, 0, []string{"A", "-n"}},
		{"no arguments", []string{"-n", "7"}, 7, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("prog cmd", flag.ContinueOnError)
			n := fs.Int("n", 0, "how many")
			fs.String("s", "", "a string")
			fs.Bool("b", false, "a switch")
			var stdout, stderr bytes.Buffer
			if err := Parse(fs, tc.args, &stdout, &stderr); err != nil {
				t.Fatalf("%v (stderr %q)", err, stderr.String())
			}
			if *n != tc.n || !slices.Equal(fs.Args(), tc.rest) {
				t.Fatalf("n %d, args %q; want %d, %q", *n, fs.Args(), tc.n, tc.rest)
			}
		})
	}
}

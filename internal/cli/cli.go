// Package cli is what trustd, rxd and rxctl agree on at the command line.
// Help that is asked for is printed on standard output, exits 0 and does
// nothing else; bad usage is printed on standard error and exits 2; any
// other failure exits 1.
package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nuskha/nuskha/internal/buildinfo"
)

// ErrHelp is returned by Parse when help was asked for. A command MUST
// return it at once, before opening a key, a database or a connection.
var ErrHelp = flag.ErrHelp

// UsageError is a command line that cannot be run as given.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, a ...any) error {
	return UsageError{fmt.Errorf(format, a...)}
}

// IsHelp reports whether arg asks for help.
func IsHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

// Parse parses args into fs. When help is asked for, anywhere in args, it
// prints fs's usage on stdout and returns ErrHelp; on a bad flag it prints
// the complaint and the usage on stderr and returns a UsageError.
//
// Asking for help must never act, so a help flag anywhere in args — even
// where it would be read as a flag's value (`-comment -h`) or after "--" —
// asks for help and nothing else.
//
// Flags may come after positional arguments (`enrol approve ID -out F`), as
// people write them: package flag alone stops at the first positional
// argument and would take the rest as arguments. Only "--" ends the flags.
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var buf bytes.Buffer
	out := fs.Output()
	fs.SetOutput(&buf)
	defer fs.SetOutput(out)
	var err error
	if slices.ContainsFunc(args, IsHelp) {
		fs.Usage()
		err = ErrHelp
	} else {
		err = parseInterspersed(fs, args)
	}
	switch {
	case errors.Is(err, ErrHelp):
		_, _ = stdout.Write(buf.Bytes())
		return ErrHelp
	case err != nil:
		_, _ = stderr.Write(buf.Bytes())
		return UsageError{err}
	}
	return nil
}

// parseInterspersed parses flags wherever they are in args, leaving the
// positional arguments, in order, as fs.Args().
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		left := fs.Args()
		if len(left) == 0 {
			break
		}
		if endedByTerminator(fs, rest[:len(rest)-len(left)]) {
			positional = append(positional, left...)
			break
		}
		positional = append(positional, left[0])
		rest = left[1:]
	}
	// Leave exactly the positional arguments in fs.Args().
	return fs.Parse(append([]string{"--"}, positional...))
}

// endedByTerminator reports whether package flag, having consumed the
// arguments in consumed, stopped at a "--" of its own rather than at a
// positional argument: a "--" that was a flag's value (`-comment --`) does
// not end the flags. It reads consumed as package flag does.
func endedByTerminator(fs *flag.FlagSet, consumed []string) bool {
	for i := 0; i < len(consumed); i++ {
		a := consumed[i]
		if a == "--" {
			return true
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		i++ // the next argument is this flag's value
	}
	return false
}

// Exit codes shared by the three commands.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// Exit reports err on stderr, prefixed with the command's name, and
// returns the process's exit code.
func Exit(name string, err error, stderr io.Writer) int {
	var ue UsageError
	switch {
	case err == nil, errors.Is(err, ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return ExitFailed
}

// Version is every command's `version` subcommand: it prints which build
// is running.
func Version(name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name+" version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return Usagef("version takes no arguments")
	}
	_, err := io.WriteString(stdout, buildinfo.Read().Format(name))
	return err
}

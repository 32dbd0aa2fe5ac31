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
// A help flag after the first positional argument ends flag parsing in
// package flag and so would be taken as an argument (`subject show ID -h`);
// it is looked for there too, because asking for help must never act.
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var buf bytes.Buffer
	out := fs.Output()
	fs.SetOutput(&buf)
	defer fs.SetOutput(out)
	err := fs.Parse(args)
	if err == nil && slices.ContainsFunc(fs.Args(), IsHelp) {
		fs.Usage()
		err = ErrHelp
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

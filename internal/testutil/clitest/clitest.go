// Package clitest helps test command lines: which flags a command's usage
// lists, so a test can give all of them without a list to keep up to date,
// and which files a command left behind.
package clitest

import (
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// flagLine is how flag.PrintDefaults starts each flag's entry.
var flagLine = regexp.MustCompile(`(?m)^  -(\S+)`)

// FlagNames lists the flags in a usage text written by flag.PrintDefaults,
// in its (alphabetical) order.
func FlagNames(usage string) []string {
	var names []string
	for _, m := range flagLine.FindAllStringSubmatch(usage, -1) {
		names = append(names, m[1])
	}
	return names
}

// Args is -name=value for each flag of usage that values has a value for.
func Args(usage string, values map[string]string) []string {
	var args []string
	for _, name := range FlagNames(usage) {
		if v, ok := values[name]; ok {
			args = append(args, "-"+name+"="+v)
		}
	}
	return args
}

// HelpArgs are the ways of asking a command for help a test should try
// besides a lone -h: --help and -help, and -h or --help after the flags
// given or after an argument.
func HelpArgs(flags []string) [][]string {
	with := func(tail ...string) []string { return append(slices.Clone(flags), tail...) }
	return [][]string{{"--help"}, {"-help"}, with("-h"), with("--help"), with("ARG", "-h")}
}

// Files lists what is under dir (paths relative to it), to compare before
// and after a command.
func Files(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		files = append(files, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Package buildinfo says which build of Nuskha is running: the module
// version, the commit it was built from and whether the tree had changes,
// and the Go version.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// commit and modified are set by the linker (deploy/build.sh passes
// -X …/buildinfo.commit=… -X …/buildinfo.modified=true|false) for builds
// where the go command records no VCS data: with -buildvcs=false in GOFLAGS,
// as on some build machines, or in a git worktree, which it does not
// recognise. They are never written at run time.
var commit, modified string

// Unknown is shown for what the binary does not record.
const Unknown = "unknown"

// Info describes a build.
type Info struct {
	Version   string // module version; "(devel)" for a build from a checkout
	Commit    string // VCS revision, or Unknown
	Modified  string // "true", "false" or Unknown: were there uncommitted changes
	Time      string // commit time (RFC 3339) when the go command recorded it, else ""
	GoVersion string
	Platform  string // GOOS/GOARCH
}

// Read returns this binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return from(bi, commit, modified)
}

// from prefers what the go command recorded (vcs.* settings) to what was
// passed to the linker, and says Unknown rather than guess.
func from(bi *debug.BuildInfo, ldCommit, ldModified string) Info {
	i := Info{Version: Unknown, Commit: Unknown, Modified: Unknown, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if ldCommit != "" {
		i.Commit = ldCommit
		if ldModified == "true" || ldModified == "false" {
			i.Modified = ldModified
		}
	}
	if bi == nil {
		return i
	}
	if bi.Main.Version != "" {
		i.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	var vcsCommit, vcsModified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			vcsCommit = s.Value
		case "vcs.modified":
			vcsModified = s.Value
		case "vcs.time":
			i.Time = s.Value
		}
	}
	if vcsCommit != "" {
		i.Commit, i.Modified = vcsCommit, Unknown
		if vcsModified == "true" || vcsModified == "false" {
			i.Modified = vcsModified
		}
	}
	return i
}

// Format is the text `<name> version` prints.
func (i Info) Format(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s version %s\n", name, i.Version)
	switch {
	case i.Commit == Unknown:
		b.WriteString("  commit   unknown (built without VCS information; deploy/build.sh stamps it)\n")
	case i.Modified == "true":
		fmt.Fprintf(&b, "  commit   %s, with uncommitted changes\n", i.Commit)
	case i.Modified == "false":
		fmt.Fprintf(&b, "  commit   %s\n", i.Commit)
	default:
		fmt.Fprintf(&b, "  commit   %s (whether the tree had changes is unknown)\n", i.Commit)
	}
	if i.Time != "" {
		fmt.Fprintf(&b, "  time     %s\n", i.Time)
	}
	fmt.Fprintf(&b, "  go       %s %s\n", i.GoVersion, i.Platform)
	return b.String()
}

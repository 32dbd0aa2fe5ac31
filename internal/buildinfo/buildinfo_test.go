package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFrom(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/nuskha/nuskha", Version: "(devel)"}}
		if rev != "" {
			bi.Main.Version = "v0.0.0-20261204120000-0123456789ab+dirty"
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev},
				debug.BuildSetting{Key: "vcs.time", Value: "2026-12-04T12:00:00Z"})
		}
		if modified != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	for _, tc := range []struct {
		name                 string
		bi                   *debug.BuildInfo
		ldCommit, ldModified string
		want                 Info
		says                 []string
	}{
		{"stamped by the go command", vcs("0123456789abcdef", "true"), "", "",
			Info{Version: "v0.0.0-20261204120000-0123456789ab+dirty", Commit: "0123456789abcdef", Modified: "true", Time: "2026-12-04T12:00:00Z", GoVersion: "go1.99.1"},
			[]string{"rxd version v0.0.0-20261204120000-0123456789ab+dirty\n", "  commit   0123456789abcdef, with uncommitted changes\n", "  time     2026-12-04T12:00:00Z\n", "  go       go1.99.1 "}},
		{"the go command's stamp wins over the linker's", vcs("0123456789abcdef", "false"), "fedcba", "true",
			Info{Version: "v0.0.0-20261204120000-0123456789ab+dirty", Commit: "0123456789abcdef", Modified: "false", Time: "2026-12-04T12:00:00Z", GoVersion: "go1.99.1"},
			[]string{"  commit   0123456789abcdef\n"}},
		{"stamped by the linker (deploy/build.sh)", vcs("", ""), "fedcba9876543210", "false",
			Info{Version: "(devel)", Commit: "fedcba9876543210", Modified: "false", GoVersion: "go1.99.1"},
			[]string{"rxd version (devel)\n", "  commit   fedcba9876543210\n"}},
		{"linker stamp without the modified flag", vcs("", ""), "fedcba9876543210", "",
			Info{Version: "(devel)", Commit: "fedcba9876543210", Modified: Unknown, GoVersion: "go1.99.1"},
			[]string{"  commit   fedcba9876543210 (whether the tree had changes is unknown)\n"}},
		{"not stamped", vcs("", ""), "", "",
			Info{Version: "(devel)", Commit: Unknown, Modified: Unknown, GoVersion: "go1.99.1"},
			[]string{"  commit   unknown (built without VCS information"}},
		{"no build information", nil, "", "",
			Info{Version: Unknown, Commit: Unknown, Modified: Unknown, GoVersion: runtime.Version()},
			[]string{"rxd version unknown\n", "  commit   unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := from(tc.bi, tc.ldCommit, tc.ldModified)
			tc.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			text := got.Format("rxd")
			for _, s := range tc.says {
				if !strings.Contains(text, s) {
					t.Errorf("%q does not say %q", text, s)
				}
			}
			if tc.want.Time == "" && strings.Contains(text, "  time ") {
				t.Errorf("%q shows a time it does not have", text)
			}
		})
	}
}

// TestBuildStamp builds a small program the way deploy/build.sh builds the
// commands — with -buildvcs=false, as GOFLAGS has it on some machines — and
// checks that it names the commit checked out, or "unknown" outside a git
// checkout; and that a bare build says "unknown" rather than guess.
func TestBuildStamp(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build with")
	}
	out, err := exec.Command("bash", filepath.Join("..", "..", "deploy", "build.sh"), "-print-ldflags").Output()
	if err != nil {
		t.Fatalf("deploy/build.sh -print-ldflags: %v", err)
	}
	ldflags := strings.TrimSpace(string(out))
	wantCommit, wantChanges := "commit   unknown", ""
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		wantCommit = "commit   " + strings.TrimSpace(string(head))
		if status, _ := exec.Command("git", "status", "--porcelain").Output(); len(status) > 0 {
			wantChanges = ", with uncommitted changes"
		}
	}
	version := func(ldflags string) string {
		bin := filepath.Join(t.TempDir(), "version")
		cmd := exec.Command(goCmd, "build", "-buildvcs=false", "-ldflags", ldflags, "-o", bin, "./testdata/version")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		out, err := exec.Command(bin).Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if got := version(ldflags); !strings.Contains(got, wantCommit+wantChanges+"\n") || !strings.Contains(got, "  go       "+runtime.Version()) {
		t.Errorf("built like deploy/build.sh:\n%s\nwant %q", got, wantCommit+wantChanges)
	}
	if got := version(""); !strings.Contains(got, "commit   unknown") {
		t.Errorf("built without a stamp:\n%s", got)
	}
}

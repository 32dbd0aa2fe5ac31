package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/cli"
	_ "modernc.org/sqlite"
)

// TestBackup: trustd backup copies the CA's SQLite database to a new,
// private file that passes SQLite's integrity check and holds what init
// recorded (the officers, their certificates, the audit trail); it never
// writes over a file, and leaves PostgreSQL to pgBackRest.
func TestBackup(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ca")
	if _, stderr, code := runTrustd("init", "-dir", dir, "-officer", "alice", "-officer", "bob",
		"-admin-listen", "127.0.0.1:0", "-public-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0"); code != cli.ExitOK {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	config := filepath.Join(dir, "trustd.json")
	out := filepath.Join(root, "copy.db")
	stdout, stderr, code := runTrustd("backup", "-config", config, "-out", out)
	if code != cli.ExitOK || !strings.Contains(stdout, "integrity check ok") {
		t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
	}
	info, err := os.Stat(out)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the copy: %v, %v; want -rw-------", info.Mode(), err)
	}
	db, err := sql.Open("sqlite", "file:"+out+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for table, least := range map[string]int{"subjects": 2, "certificates": 2, "audit_events": 1} {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n < least {
			t.Errorf("%s: %d rows in the copy (%v), want at least %d", table, n, err, least)
		}
	}
	if _, stderr, code := runTrustd("backup", "-config", config, "-out", out); code == cli.ExitOK || !strings.Contains(stderr, "exists") {
		t.Fatalf("a backup over the copy: exit %d, %s", code, stderr)
	}
	pg := filepath.Join(root, "pg.json")
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pg, []byte(strings.Replace(string(b), `"driver": "sqlite"`, `"driver": "postgres", "dsn_file": "dsn"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runTrustd("backup", "-config", pg, "-out", filepath.Join(root, "pg.db")); code != cli.ExitUsage || !strings.Contains(stderr, "pgBackRest") {
		t.Fatalf("backup of PostgreSQL: exit %d, %s", code, stderr)
	}
}

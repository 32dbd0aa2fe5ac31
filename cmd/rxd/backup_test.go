package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/filemode"
)

// TestBackupWhileWriting: rxd backup copies the SQLite database while
// another connection keeps writing to it. The copy passes SQLite's
// integrity check, is private to its owner, holds the registry that was
// imported, and holds a consistent snapshot of the writes: rows 1…k for
// some k, no gap, between what was written before the backup began and
// what was written by its end. A second backup to the same file is
// refused and leaves the first copy alone.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "rxd.db")
	reg := filepath.Join(dir, "registry.csv")
	if err := os.WriteFile(reg, []byte(insuredtest.Rows(2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"import-registry", "-db", db, "-create", "-mode", "full", "-quiet", reg}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	w, err := sqlstore.Open(ctx, sqlstore.SQLite, db)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.SQL().ExecContext(ctx, `CREATE TABLE backup_probe (n INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	written := 0
	insert := func() {
		n := written + 1
		if _, err := w.SQL().ExecContext(ctx, `INSERT INTO backup_probe (n) VALUES (?)`, n); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		written = n
		mu.Unlock()
	}
	for range 100 {
		insert()
	}
	before := written
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				insert()
			}
		}
	}()
	copyFile := filepath.Join(dir, "backup", "rxd-copy.db")
	if err := os.Mkdir(filepath.Dir(copyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	err = run(ctx, []string{"backup", "-db", db, "-out", copyFile}, &out, &errb)
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, errb.String())
	}
	after := written
	if !strings.Contains(out.String(), "integrity check ok") {
		t.Fatalf("backup said %q", out.String())
	}
	filemode.Private(t, filepath.Dir(copyFile))

	c, err := sql.Open("sqlite", "file:"+copyFile+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var check string
	if err := c.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	var rows, lo, hi, persons int
	if err := c.QueryRow(`SELECT count(*), COALESCE(min(n), 0), COALESCE(max(n), 0) FROM backup_probe`).Scan(&rows, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if lo != 1 || hi != rows || rows < before || rows > after {
		t.Fatalf("the copy holds rows %d…%d (%d of them); want 1…k for a k between %d (before) and %d (after)", lo, hi, rows, before, after)
	}
	if err := c.QueryRow(`SELECT count(*) FROM insured_current`).Scan(&persons); err != nil || persons != 2000 {
		t.Fatalf("the copy holds %d insured persons (%v), want 2000", persons, err)
	}
	t.Logf("backed up with %d rows written before, %d by the end, %d in the copy", before, after, rows)

	// Never over an existing file.
	info, _ := os.Stat(copyFile)
	err = run(ctx, []string{"backup", "-db", db, "-out", copyFile}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("a backup over %s: %v", copyFile, err)
	}
	if again, _ := os.Stat(copyFile); again.Size() != info.Size() || again.ModTime() != info.ModTime() {
		t.Fatal("the refused backup changed the first copy")
	}
	// PostgreSQL is pgBackRest's.
	if err := run(ctx, []string{"backup", "-db-driver", "postgres", "-dsn-file", "x", "-out", filepath.Join(dir, "pg")}, &out, &errb); err == nil ||
		!strings.Contains(fmt.Sprint(err), "pgBackRest") {
		t.Fatalf("backup of PostgreSQL: %v", err)
	}
}

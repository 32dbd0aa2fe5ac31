package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

func TestImportRegistryCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "rxd.db")
	good := filepath.Join(dir, "registry.csv")
	if err := os.WriteFile(good, []byte(insuredtest.Rows(1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"import-registry", "-db", db, "-mode", "full", good}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "1000 persons — 750 main insured, 250 dependants") || !strings.Contains(errb.String(), "100.0%") {
		t.Fatalf("summary %q, progress %q", out.String(), errb.String())
	}

	bad := filepath.Join(dir, "bad.csv")
	rows := insuredtest.Header() + insuredtest.Row(2000) + strings.Replace(insuredtest.Row(2001), ",active,", ",asleep,", 1) + insuredtest.Row(2000)
	if err := os.WriteFile(bad, []byte(rows), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"import-registry", "-db", db, "-mode", "update", "-quiet", "-json", bad}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "2 bad row(s)") {
		t.Fatalf("bad file: %v", err)
	}
	var ie insured.ImportError
	if json.Unmarshal(out.Bytes(), &ie) != nil || ie.Total != 2 || ie.Rows[0].Line != 3 || ie.Rows[1].Line != 4 {
		t.Fatalf("reported %s", out.String())
	}
	d, _ := sqlstore.Open(context.Background(), sqlstore.SQLite, db)
	defer d.Close()
	s, _ := sqlstore.NewInsured(context.Background(), d)
	if n, _ := s.Count(context.Background()); n != 1000 {
		t.Fatalf("count after a rejected update = %d", n)
	}
}

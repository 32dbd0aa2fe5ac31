// Package pgtest gives each test a clean PostgreSQL schema in the database
// named by NUSKHA_TEST_POSTGRES (a pgx connection URL), which deploy/test.sh
// sets after starting PostgreSQL. Without it the test is skipped — unless
// NUSKHA_REQUIRE_POSTGRES=1, when it fails, so CI cannot pass by skipping.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// Env names.
const (
	DSNEnv     = "NUSKHA_TEST_POSTGRES"
	RequireEnv = "NUSKHA_REQUIRE_POSTGRES"
)

// Schema creates a new schema and returns a DSN whose search_path selects
// it. The schema is dropped when the test ends.
func Schema(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s is not set and %s=1: run deploy/test.sh, which starts PostgreSQL", DSNEnv, RequireEnv)
		}
		t.Skipf("PostgreSQL tests need %s (deploy/test.sh sets it)", DSNEnv)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("creating schema: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", DSNEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

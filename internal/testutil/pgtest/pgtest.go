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
	"io"
	"net"
	"net/url"
	"os"
	"sync"
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

// Proxy is a TCP relay between a client and the PostgreSQL server, so
// that a test can take the database away from a daemon as a network
// failure or a server crash would — every connection cut, new ones
// refused — without touching the server that other tests share.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]bool
	down  bool
	done  chan struct{}
}

// Through starts a proxy to dsn's server and returns it with dsn pointed
// at it. It is stopped when the test ends.
func Through(t testing.TB, dsn string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}, done: make(chan struct{})}
	go p.accept()
	t.Cleanup(p.Cut)
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *Proxy) accept() {
	defer close(p.done)
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut takes the database away for good: the listener is closed (new
// connections are refused) and every relayed connection is cut.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	<-p.done
}

package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/loadgen"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/testutil/trustdtest"
	"github.com/nuskha/nuskha/internal/tlog"
)

// TestKillUnderLoad is issue 12's durability promise tested on the real
// binary: rxd serves the exchange in its own process on PostgreSQL (and on
// SQLite) while eight clients submit prescriptions and claim, dispense and
// close each as soon as it is accepted; once rxd has acknowledged enough
// of both, the process is killed with SIGKILL — no shutdown, nothing
// flushed. rxd is started again on the same database, and every
// prescription and dispense whose 201 or 200 a client received is there,
// nothing is half-written (every prescription has its lines, every
// dispense its lines, and what each prescription line counts as dispensed
// is exactly the sum of its dispenses' lines), and the restarted rxd
// accepts new prescriptions.
func TestKillUnderLoad(t *testing.T) {
	for _, driver := range []string{sqlstore.Postgres, sqlstore.SQLite} {
		t.Run(driver, func(t *testing.T) { killUnderLoad(t, driver) })
	}
}

func killUnderLoad(t *testing.T, driver string) {
	dbFlags, dsn := []string{"-db-driver", "sqlite", "-db", filepath.Join(t.TempDir(), "rxd.db")}, ""
	if driver == sqlstore.Postgres {
		dsn = pgtest.Schema(t)
		file := filepath.Join(t.TempDir(), "dsn")
		if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
			t.Fatal(err)
		}
		dbFlags = []string{"-db-driver", "postgres", "-dsn-file", file}
	} else {
		dsn = dbFlags[3]
	}
	td := trustdtest.Start(t)
	ctx := context.Background()
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	officer := func(i int) loadgen.Officer {
		chain, err := pemutil.ReadCertificateBundle(td.Officers[i].CertFile)
		if err != nil {
			t.Fatal(err)
		}
		k, err := keys.OpenKey(ctx, td.Officers[i].KeyURI)
		if err != nil {
			t.Fatal(err)
		}
		return loadgen.Officer{Chain: chain, Key: k}
	}
	dir := filepath.Join(t.TempDir(), "load")
	manifest, err := loadgen.Setup(ctx, loadgen.SetupOptions{Dir: dir, AdminURL: td.AdminURL, RootFile: td.RootFile,
		Requester: officer(0), Approver: officer(1), Practitioners: 2, Pharmacies: 4, Persons: 3000, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	m, err := loadgen.ReadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "rxd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	create := []string{}
	if driver == sqlstore.SQLite {
		create = []string{"-create"}
	}
	for _, args := range [][]string{
		append(append([]string{"import-registry", "-mode", "full", "-quiet"}, append(dbFlags, create...)...), m.Registry),
		append([]string{"import-catalogue", "-label", "sample", "-valid-from", "1400-01-01", "-drugs", "../../deploy/sample/drugs.csv",
			"-services", "../../deploy/sample/services.csv"}, dbFlags...),
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("rxd %s: %v\n%s", args[0], err, out)
		}
	}
	serve := append([]string{"serve", "-listen", "127.0.0.1:0", "-tls-cert", m.RxdTLS.Chain, "-tls-key", m.RxdTLS.Key, "-client-ca", m.Root,
		"-exchange-key", m.Exchange.Key, "-exchange-cert", m.Exchange.Chain,
		"-caller-rate", "1000000", "-caller-burst", "1000000", "-daily-lookups", "1000000"}, slices.Concat(dbFlags, testAuditFlags(t))...)

	cmd, url := startServe(t, bin, serve)
	// Enough of both acknowledged, then SIGKILL while the load goes on.
	var mu sync.Mutex
	acked := map[string]map[string]bool{loadgen.OpPrescribe: {}, loadgen.OpDispense: {}}
	enough := make(chan struct{})
	var once sync.Once
	runDone := make(chan error, 1)
	go func() {
		_, err := loadgen.Run(ctx, loadgen.RunOptions{Manifest: manifest, URL: url, N: 2500, Clients: 8, Pipeline: true, Keys: keys,
			Acked: func(op, id string) {
				mu.Lock()
				acked[op][id] = true
				if len(acked[loadgen.OpPrescribe]) >= 200 && len(acked[loadgen.OpDispense]) >= 100 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}})
		runDone <- err
	}()
	select {
	case <-enough:
	case err := <-runDone:
		t.Fatalf("the load ended before rxd was killed: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("rxd ended with %v, not killed", err)
	}
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	prescriptions, dispenses := len(acked[loadgen.OpPrescribe]), len(acked[loadgen.OpDispense])
	mu.Unlock()
	if prescriptions >= 2500 {
		t.Fatalf("all %d prescriptions were acknowledged: rxd was killed after the load, not under it", prescriptions)
	}
	t.Logf("killed with %d prescriptions and %d dispenses acknowledged", prescriptions, dispenses)

	cmd, url = startServe(t, bin, serve)
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	db, err := sqlstore.Open(ctx, driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := db.SQL()
	for op, table := range map[string]string{loadgen.OpPrescribe: "prescriptions", loadgen.OpDispense: "dispenses"} {
		stored := map[string]bool{}
		rows, err := q.QueryContext(ctx, "SELECT id FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			stored[id] = true
		}
		rows.Close()
		lost := 0
		for id := range acked[op] {
			if !stored[id] {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("%d of %d acknowledged %s lost", lost, len(acked[op]), table)
		}
	}
	for what, query := range map[string]string{
		"prescriptions without lines": `SELECT count(*) FROM prescriptions p WHERE NOT EXISTS (SELECT 1 FROM prescription_lines l WHERE l.prescription_id = p.id)`,
		"dispenses without lines":     `SELECT count(*) FROM dispenses d WHERE NOT EXISTS (SELECT 1 FROM dispense_lines l WHERE l.dispense_id = d.id)`,
		"prescription lines whose dispensed count is not the sum of their dispenses": `SELECT count(*) FROM prescription_lines l WHERE l.dispensed <> COALESCE((
			SELECT sum(dl.quantity) FROM dispense_lines dl JOIN dispenses d ON d.id = dl.dispense_id
			WHERE d.prescription_id = l.prescription_id AND dl.item = l.item AND dl.fill = l.fill), 0)`,
		"prescriptions still active after a dispense": `SELECT count(*) FROM prescriptions p WHERE p.state = 'active' AND EXISTS (SELECT 1 FROM dispenses d WHERE d.prescription_id = p.id)`,
	} {
		var n int
		if err := q.QueryRowContext(ctx, query).Scan(&n); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n != 0 {
			t.Errorf("%d %s", n, what)
		}
	}
	checkAuditAfterKill(t, q, acked[loadgen.OpPrescribe])
	// The restarted rxd serves: new prescriptions, for persons the first
	// load did not reach, are accepted, claimed, dispensed and closed.
	rep, err := loadgen.Run(ctx, loadgen.RunOptions{Manifest: manifest, URL: url, N: 20, First: 2500, Clients: 2, Dispense: true, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if p, c := rep.Ops[loadgen.OpPrescribe], rep.Ops[loadgen.OpClose]; p == nil || p.OK != 20 || c == nil || c.OK != 20 {
		t.Fatalf("after the restart: %+v", rep.Ops)
	}
}

// startServe starts rxd serve and returns once it logs that it listens.
func startServe(t *testing.T, bin string, args []string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	var logs strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			var line struct{ Msg, Listen string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "rxd serving" {
				listening <- line.Listen
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		close(listening)
	}()
	select {
	case addr, ok := <-listening:
		if !ok {
			_ = cmd.Wait()
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("rxd serve ended before it listened\n%s", logs.String())
		}
		_, port, _ := strings.Cut(addr, ":")
		return cmd, "https://localhost:" + port
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("rxd serve did not listen within a minute")
	}
	return nil, ""
}

// checkAuditAfterKill: every acknowledged prescription has its audit
// entry, every stored prescription and dispense its entry, and no entry
// of a write exists without the write — the two committed together, or
// neither, whatever the kill interrupted. Entries are read pending or
// sequenced alike.
func checkAuditAfterKill(t *testing.T, q *sql.DB, acked map[string]bool) {
	t.Helper()
	ctx := context.Background()
	ok := map[string]map[string]int{} // action → object → entries
	for _, table := range []string{"tlog_pending", "tlog_entries"} {
		rows, err := q.QueryContext(ctx, "SELECT entry FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			e, err := tlog.Decode(b)
			if err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			if e.Outcome == audit.OK {
				if ok[e.Action] == nil {
					ok[e.Action] = map[string]int{}
				}
				ok[e.Action][e.Object]++
			}
		}
		rows.Close()
	}
	count := func(query string) map[string]int {
		out := map[string]int{}
		rows, err := q.QueryContext(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out["rx:"+id]++
		}
		return out
	}
	prescriptions := count("SELECT id FROM prescriptions")
	dispenses := count("SELECT prescription_id FROM dispenses")
	missing := 0
	for id := range acked {
		if ok["prescribe"]["rx:"+id] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged prescriptions have no audit entry", missing, len(acked))
	}
	for what, c := range map[string]struct {
		action string
		stored map[string]int
	}{"prescription": {"prescribe", prescriptions}, "dispense": {"dispense", dispenses}} {
		for obj, n := range c.stored {
			if ok[c.action][obj] < n {
				t.Errorf("%s of %s: %d stored, %d entries", what, obj, n, ok[c.action][obj])
			}
		}
		for obj := range ok[c.action] {
			if c.stored[obj] == 0 {
				t.Errorf("a %s entry of %s, which has no %s stored", c.action, obj, what)
			}
		}
	}
	t.Logf("audit: %d prescribe and %d dispense entries for %d prescriptions and their dispenses", len(ok["prescribe"]), len(ok["dispense"]), len(prescriptions))
}

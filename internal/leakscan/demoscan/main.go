// Command demoscan is the last step of deploy/demo.sh: after README.md's
// walkthrough it looks for the walkthrough's secrets (leakscan.DemoNeedles:
// the registry's national ids, persons' names, the prescriptions'
// contents) in everything an auditor or an operator gets to see of the
// audit trail:
//
//  1. the answers of the patients' access log (POST /v1/patient-access-log,
//     for each patient of the walkthrough's documents, every page), as the
//     insurer's service reads it;
//  2. the audit logs as an auditor fetches them (-audit, each a log's base
//     URL): the checkpoint, every hash tile and every entry bundle of its
//     tree, through tlog.Client, the client `rxctl audit verify` uses;
//  3. every row of every audit table (tlog_*, and any table named *audit*)
//     of each database (-db, SQLite): raw entries, tiles and checkpoints;
//  4. the daemons' logs (-log), line by line.
//
// It fails (exit 1) naming the first hit of each source — table, column and
// row; URL; file:line — and also when a source is empty, so that a scan
// that read nothing never passes.
//
//	go run ./internal/leakscan/demoscan -repo . -db trustd=var/trustd/trustd.db -db rxd=var/rxd/rxd.db \
//	    -audit https://127.0.0.1:8444/audit -audit https://localhost:8543/audit -rxd https://localhost:8543 \
//	    -ca-file var/trustd/ca/root.crt -cert var/rxd/auditor/chain.pem -key 'softkey:…' -log run.log
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/leakscan"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/tlog"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type config struct {
	repo, rxd, caFile, cert, key string
	dbs, audits, logs            list
}

func main() {
	var c config
	flag.StringVar(&c.repo, "repo", ".", "the repository: README.md and deploy/sample, where the secrets come from")
	flag.Var(&c.dbs, "db", "NAME=PATH: a daemon's SQLite database, whose audit tables are read (repeat)")
	flag.Var(&c.audits, "audit", "an audit log's base URL (its checkpoint is <URL>/checkpoint) (repeat)")
	flag.StringVar(&c.rxd, "rxd", "", "rxd's URL: the access log of each patient of deploy/sample's documents is read")
	flag.StringVar(&c.caFile, "ca-file", "", "the root to trust for HTTPS")
	flag.StringVar(&c.cert, "cert", "", "a service's client certificate chain (PEM): rxd serves its log and the access log to the insurer's services only")
	flag.StringVar(&c.key, "key", "", "its key URI (softkey:… or pkcs11:…)")
	flag.Var(&c.logs, "log", "a log file, scanned line by line (repeat)")
	flag.Parse()
	// Everything, or the logs alone (again, once the daemons have stopped
	// and all they wrote in answer to the first scan's requests is there).
	all := len(c.dbs) > 0 && len(c.audits) > 0 && c.rxd != ""
	logsOnly := len(c.dbs) == 0 && len(c.audits) == 0 && c.rxd == ""
	if flag.NArg() != 0 || len(c.logs) == 0 || !all && !logsOnly {
		fmt.Fprintln(os.Stderr, "usage: demoscan -repo DIR -db NAME=PATH… -audit URL… -rxd URL -ca-file F -cert F -key URI -log FILE…\n       demoscan -repo DIR -log FILE…")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hits, err := run(ctx, c, os.Stdout)
	for _, h := range hits {
		fmt.Fprintf(os.Stderr, "demoscan: FOUND %s\n", h)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demoscan: %v\n", err)
	}
	if err != nil || len(hits) > 0 {
		os.Exit(1)
	}
}

// run scans every source and returns the first hit of each.
func run(ctx context.Context, c config, out io.Writer) ([]*leakscan.Hit, error) {
	needles, err := leakscan.DemoNeedles(c.repo)
	if err != nil {
		return nil, err
	}
	s := leakscan.New(needles...)
	fmt.Fprintf(out, "demoscan: looking for %d values (national ids, names, prescription contents)\n", s.Len())
	clean := func(hits []*leakscan.Hit, err error) ([]*leakscan.Hit, error) {
		if err == nil && len(hits) == 0 {
			fmt.Fprintf(out, "demoscan: none of the %d values found in %d bytes\n", s.Len(), s.Scanned)
		}
		return hits, err
	}
	if c.rxd == "" {
		return clean(scanLogs(s, c.logs, out))
	}
	hc, err := httpClient(ctx, c)
	if err != nil {
		return nil, err
	}
	var hits []*leakscan.Hit
	keep := func(h *leakscan.Hit) {
		if h != nil {
			hits = append(hits, h)
		}
	}

	ids, err := patientIDs(c.repo)
	if err != nil {
		return nil, err
	}
	answers, accesses, err := accessLogs(ctx, hc.Client, c.rxd, ids)
	if err != nil {
		return nil, err
	}
	if accesses == 0 {
		return nil, errors.New("the patients' access log listed nothing for the walkthrough's patients: nothing was scanned there")
	}
	keep(scanAnswers(s, answers))
	fmt.Fprintf(out, "demoscan: %d access-log answers (%d accesses) scanned\n", len(answers), accesses)

	for _, base := range c.audits {
		hc.answers = nil
		size, err := fetchLog(ctx, &tlog.Client{Base: base, HTTP: hc.Client})
		if err != nil {
			return hits, fmt.Errorf("%s: %w", base, err)
		}
		keep(scanAnswers(s, hc.answers))
		fmt.Fprintf(out, "demoscan: %s: checkpoint, tiles and entry bundles of %d entries scanned (%d answers)\n", base, size, len(hc.answers))
	}

	for _, d := range c.dbs {
		name, path, ok := strings.Cut(d, "=")
		if !ok {
			return hits, fmt.Errorf("-db %q: want NAME=PATH", d)
		}
		h, summary, err := scanDatabase(ctx, s, name, path)
		if err != nil {
			return hits, err
		}
		keep(h)
		fmt.Fprintf(out, "demoscan: %s\n", summary)
	}

	logHits, err := scanLogs(s, c.logs, out)
	return clean(append(hits, logHits...), err)
}

// scanLogs scans each log file line by line.
func scanLogs(s *leakscan.Scanner, logs []string, out io.Writer) ([]*leakscan.Hit, error) {
	var hits []*leakscan.Hit
	for _, path := range logs {
		f, err := os.Open(path)
		if err != nil {
			return hits, err
		}
		h, lines, err := s.ScanLines(path, f)
		f.Close()
		if err != nil {
			return hits, fmt.Errorf("%s: %w", path, err)
		}
		if lines == 0 {
			return hits, fmt.Errorf("%s is empty: nothing was scanned there", path)
		}
		if h != nil {
			hits = append(hits, h)
		}
		fmt.Fprintf(out, "demoscan: %s: %d lines scanned\n", path, lines)
	}
	return hits, nil
}

// answer is an HTTP answer as received.
type answer struct {
	where string
	body  []byte
}

func scanAnswers(s *leakscan.Scanner, as []answer) *leakscan.Hit {
	for _, a := range as {
		if h := s.Scan(a.where, a.body); h != nil {
			return h
		}
	}
	return nil
}

// recording is an HTTP client that keeps every answer's body (whatever
// its status: a refusal is an answer too).
type recording struct {
	*http.Client
	next    http.RoundTripper
	answers []answer
}

// RoundTrip keeps the answer; rxd's 429 (a caller over its budget) is
// waited out as its Retry-After says, a few times.
func (r *recording) RoundTrip(req *http.Request) (*http.Response, error) {
	for try := 0; ; try++ {
		if try > 0 && req.GetBody != nil {
			b, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req.Body = b
		}
		resp, err := r.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		r.answers = append(r.answers, answer{where: fmt.Sprintf("%s %s (%s)", req.Method, req.URL, resp.Status), body: body})
		resp.Body = io.NopCloser(bytes.NewReader(body))
		wait, werr := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusTooManyRequests || werr != nil || wait > 30 || try == 4 {
			return resp, nil
		}
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(time.Duration(wait)*time.Second + 100*time.Millisecond):
		}
	}
}

func httpClient(ctx context.Context, c config) (*recording, error) {
	cfg := tlsconf.New()
	if c.caFile != "" {
		roots, err := pemutil.ReadCertificateBundle(c.caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		for _, r := range roots {
			cfg.RootCAs.AddCert(r)
		}
	}
	if c.cert != "" {
		chain, err := pemutil.ReadCertificateBundle(c.cert)
		if err != nil {
			return nil, err
		}
		m := hsm.NewManager(nil)
		key, err := m.OpenKey(ctx, c.key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{tlsconf.Certificate(key, chain)}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig, tr.Proxy = cfg, nil
	r := &recording{next: tr}
	r.Client = &http.Client{Transport: r, Timeout: 30 * time.Second}
	return r, nil
}

// patientIDs are the national ids of the patients of the walkthrough's
// documents (deploy/sample/*.json): the patients whose access logs list
// what the walkthrough did. (Asking for all the registry's would run into
// rxd's per-caller budget for patient lookups.)
func patientIDs(repo string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(repo, "deploy", "sample", "*.json"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range nationalID.FindAllSubmatch(b, -1) {
			id, err := nationalid.Parse(string(m[1]))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("deploy/sample's documents name no patient")
	}
	return ids, nil
}

var nationalID = regexp.MustCompile(`"national_id":\s*"([^"]*)"`)

// accessLogs asks rxd for every id's access log, every page, as the
// insurer's service does.
func accessLogs(ctx context.Context, hc *http.Client, rxd string, ids []string) ([]answer, int, error) {
	var (
		answers []answer
		total   int
	)
	for row, id := range ids {
		cursor := ""
		for page := 0; ; page++ {
			body, _ := json.Marshal(map[string]any{"national_id": id, "cursor": cursor, "limit": 200})
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(rxd, "/")+"/v1/patient-access-log", bytes.NewReader(body))
			if err != nil {
				return nil, 0, err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				return nil, 0, err
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, 0, err
			}
			// The request names the patient; the place says which
			// registry row it was, never the id.
			answers = append(answers, answer{where: fmt.Sprintf("POST %s/v1/patient-access-log (patient %d, page %d, %s)", rxd,
				row+1, page+1, resp.Status), body: raw})
			if resp.StatusCode != http.StatusOK {
				return answers, total, fmt.Errorf("the access log answered %s: %.300s", resp.Status, raw)
			}
			var p struct {
				Accesses   []json.RawMessage `json:"accesses"`
				NextCursor string            `json:"next_cursor"`
			}
			if err := json.Unmarshal(raw, &p); err != nil {
				return answers, total, fmt.Errorf("the access log's answer: %w", err)
			}
			total += len(p.Accesses)
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
	}
	return answers, total, nil
}

// fetchLog fetches a log's checkpoint and every tile and entry bundle of
// its tree; the client's transport keeps the answers.
func fetchLog(ctx context.Context, c *tlog.Client) (uint64, error) {
	signed, err := c.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	text := signed
	if i := bytes.Index(signed, []byte("\n\n")); i >= 0 {
		text = signed[:i+1]
	}
	cp, err := tlog.ParseCheckpoint(text)
	if err != nil {
		return 0, err
	}
	if cp.Size == 0 {
		return 0, errors.New("the log is empty: nothing to scan")
	}
	var ids []tlog.TileID
	for level := 0; tlog.TileWidthAt(tlog.TileID{Level: level}, cp.Size) > 0; level++ {
		for i := uint64(0); tlog.TileWidthAt(tlog.TileID{Level: level, Index: i}, cp.Size) > 0; i++ {
			ids = append(ids, tlog.TileID{Level: level, Index: i})
		}
	}
	if _, err := c.Tiles(cp.Size).ReadTiles(ctx, ids); err != nil {
		return 0, err
	}
	for i := uint64(0); tlog.TileWidthAt(tlog.TileID{Level: 0, Index: i}, cp.Size) > 0; i++ {
		if _, err := c.Entries(ctx, i, cp.Size); err != nil {
			return 0, err
		}
	}
	return cp.Size, nil
}

// scanDatabase reads every row of every audit table of a SQLite database.
func scanDatabase(ctx context.Context, s *leakscan.Scanner, name, path string) (*leakscan.Hit, string, error) {
	// Opening a missing file would make an empty database.
	if _, err := os.Stat(path); err != nil {
		return nil, "", err
	}
	db, err := sqlstore.Open(ctx, sqlstore.SQLite, path)
	if err != nil {
		return nil, "", err
	}
	defer db.Close()
	q := db.SQL()
	tables, err := column[string](ctx, q, `SELECT name FROM sqlite_master WHERE type = 'table'
		AND (name LIKE 'tlog!_%' ESCAPE '!' OR name LIKE '%audit%') ORDER BY name`)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	var (
		first *leakscan.Hit
		rows  int
	)
	for _, t := range tables {
		h, n, err := scanTable(ctx, s, q, name, t)
		if err != nil {
			return nil, "", fmt.Errorf("%s: table %s: %w", name, t, err)
		}
		if first == nil {
			first = h
		}
		rows += n
	}
	entries, err := column[int64](ctx, q, `SELECT count(*) FROM tlog_entries`)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	if entries[0] == 0 {
		return nil, "", fmt.Errorf("%s: tlog_entries is empty: nothing was scanned there", name)
	}
	return first, fmt.Sprintf("%s database: %d rows of %d audit tables scanned (%s)", name, rows, len(tables), strings.Join(tables, ", ")), nil
}

func scanTable(ctx context.Context, s *leakscan.Scanner, q *sql.DB, db, table string) (*leakscan.Hit, int, error) {
	// The primary key names a row; rowid when there is none.
	pk, err := column[string](ctx, q, `SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`, table)
	if err != nil {
		return nil, 0, err
	}
	rows, err := q.QueryContext(ctx, `SELECT rowid, * FROM "`+table+`" ORDER BY rowid`)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, 0, err
	}
	var (
		first *leakscan.Hit
		n     int
	)
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, 0, err
		}
		n++
		byName := map[string]string{}
		for i, c := range cols {
			byName[c] = text(vals[i])
		}
		row := "rowid " + byName[cols[0]]
		if len(pk) > 0 {
			var parts []string
			for _, k := range pk {
				parts = append(parts, k+"="+byName[k])
			}
			row = strings.Join(parts, ",")
		}
		for i, c := range cols[1:] {
			if h := s.Scan(fmt.Sprintf("%s database, table %s, column %s, row %s", db, table, c, row), bytesOf(vals[i+1])); h != nil && first == nil {
				first = h
			}
		}
	}
	return first, n, rows.Err()
}

func bytesOf(v any) []byte {
	switch v := v.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	default:
		return []byte(text(v))
	}
}

func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprint(v)
	}
}

func column[T any](ctx context.Context, q *sql.DB, query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

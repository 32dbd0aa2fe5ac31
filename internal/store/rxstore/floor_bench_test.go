package rxstore_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/rx"
)

// BenchmarkMandatedFloor prices the least any exchange must do for one
// accepted prescription on this machine, with nothing of ours in the way:
// an HTTPS call (3.4 KB signed document in, 1.5 KB answer out, 32
// kept-alive clients in the same process, as the load tool shares the
// cores), an ES256 signature verified over the document's signing input,
// one indexed read (eligibility's), an ES256 signature made (the
// acknowledgement), and the document and answer inserted in a durable
// PostgreSQL commit shared by up to 64 concurrent requests (group commit,
// four committers, as the exchange's store does). No chain, revocation,
// rules, pricing, audit log, JSON schema or idempotency: it is a floor,
// the most such a server could accept here (docs/BENCHMARKS.md, issue 12's
// target of 2 500/s).
func BenchmarkMandatedFloor(b *testing.B) {
	for _, h2 := range []bool{true, false} {
		name := "http1.1"
		if h2 {
			name = "h2"
		}
		b.Run(name, func(b *testing.B) { floorBench(b, h2, true, true) })
		// Without the read (eligibility kept in memory, say): what the
		// durable insert alone allows.
		b.Run(name+"/no-read", func(b *testing.B) { floorBench(b, h2, false, true) })
		// Without the read and the insert: what is left is HTTPS and the
		// two signatures.
		b.Run(name+"/no-database", func(b *testing.B) { floorBench(b, h2, false, false) })
	}
}

func floorBench(b *testing.B, h2, read, database bool) {
	ctx := context.Background()
	s := openExchange(b, "postgres")
	requireDurable(b, s)
	db := s.SQL()
	for _, q := range []string{
		"CREATE TABLE floor_people (nid TEXT PRIMARY KEY, plan TEXT NOT NULL)",
		"INSERT INTO floor_people SELECT lpad(i::text, 10, '0'), 'salaried' FROM generate_series(1, 100000) i",
		// As migration 0005 keeps signed documents: in the row, not compressed.
		"CREATE TABLE floor_rx (id TEXT PRIMARY KEY, jws TEXT NOT NULL, answer TEXT NOT NULL) WITH (toast_tuple_target = 8160)",
		"ALTER TABLE floor_rx ALTER COLUMN jws SET STORAGE EXTERNAL, ALTER COLUMN answer SET STORAGE EXTERNAL",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	acker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	gc := newFloorCommitter(db, 4)
	defer gc.stop()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		parts := strings.Split(string(body), ".")
		if len(parts) != 3 {
			http.Error(w, "not a compact JWS", http.StatusBadRequest)
			return
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || len(sig) != 64 {
			http.Error(w, "bad signature encoding", http.StatusBadRequest)
			return
		}
		d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		rr, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(&signer.PublicKey, d[:], rr, ss) {
			http.Error(w, "signature invalid", http.StatusUnprocessableEntity)
			return
		}
		plan := "salaried"
		if read {
			nid := fmt.Sprintf("%010d", 1+len(body)%100000)
			if err := db.QueryRowContext(r.Context(), "SELECT plan FROM floor_people WHERE nid = $1", nid).Scan(&plan); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		id := rx.NewID()
		ackInput := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"nuskha-ack+jws"}`)) + "." +
			base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"type":"ack","id":"`+id+`","prescription":{"jws_sha256":"`+base64.RawURLEncoding.EncodeToString(d[:])+`"},"tracking_code":"ABCD-EFGH-J","accepted_at":"2026-12-05T10:00:00Z"}`))
		ad := sha256.Sum256([]byte(ackInput))
		ar, as, err := ecdsa.Sign(rand.Reader, acker, ad[:])
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ackSig := make([]byte, 64)
		ar.FillBytes(ackSig[:32])
		as.FillBytes(ackSig[32:])
		answer := `{"id":"` + id + `","plan":"` + plan + `","tracking_code":"ABCD-EFGH-J","lines":` + floorLines + `,"ack":"` + ackInput + "." + base64.RawURLEncoding.EncodeToString(ackSig) + `"}`
		if database {
			if err := gc.insert(id, string(body), answer); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, answer)
	}))
	srv.EnableHTTP2 = h2
	srv.StartTLS()
	defer srv.Close()

	docs := make([][]byte, b.N)
	payload := strings.Repeat("x", 2400)
	for i := range docs {
		input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"nuskha-rx+jws"}`)) + "." +
			base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"id":"%d","items":"%s"}`, i, payload)))
		d := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, signer, d[:])
		if err != nil {
			b.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		docs[i] = []byte(input + "." + base64.RawURLEncoding.EncodeToString(sig))
	}
	const clients = 32
	var wg sync.WaitGroup
	var next sync.Mutex
	i := 0
	b.ResetTimer()
	for range clients {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.ForceAttemptHTTP2 = h2
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.CloseIdleConnections()
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= len(docs) {
					return
				}
				resp, err := c.Post(srv.URL, "application/jose", bytes.NewReader(docs[k]))
				if err != nil {
					b.Error(err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusCreated || (h2 != (resp.ProtoMajor == 2)) {
					b.Errorf("%s %d: %s %v", resp.Proto, resp.StatusCode, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepted/s")
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM floor_rx").Scan(&n); err != nil || (database && n != b.N) {
		b.Fatalf("%d rows stored of %d accepted (%v)", n, b.N, err)
	}
}

// floorLines is a two-item answer's lines and decision, about the size of
// the exchange's.
var floorLines = `[` + strings.Repeat(`{"fill":0,"item":0,"code":"IRC-1234567890","kind":"drug","quantity":20,"dispensed":0,"valid_from":"2026-12-04T20:30:00Z","valid_until":"2027-01-03T20:30:00Z","covered":true,"insurer_pays":120000,"patient_pays":30000},`, 2) + `{}]`

// floorCommitter is the least group commit: concurrent inserts wait in
// one queue, and each of a few committers takes up to 64 of them into one
// multi-row INSERT and one durable COMMIT, answering each only after it.
type floorCommitter struct {
	q    chan floorRow
	done chan struct{}
	wg   sync.WaitGroup
}

type floorRow struct {
	id, jws, answer string
	err             chan error
}

func newFloorCommitter(db *sql.DB, n int) *floorCommitter {
	c := &floorCommitter{q: make(chan floorRow, 1024), done: make(chan struct{})}
	for range n {
		c.wg.Add(1)
		go c.run(db)
	}
	return c
}

func (c *floorCommitter) insert(id, jws, answer string) error {
	r := floorRow{id, jws, answer, make(chan error, 1)}
	c.q <- r
	return <-r.err
}

func (c *floorCommitter) stop() { close(c.done); c.wg.Wait() }

func (c *floorCommitter) run(db *sql.DB) {
	defer c.wg.Done()
	for {
		var batch []floorRow
		select {
		case r := <-c.q:
			batch = append(batch, r)
		case <-c.done:
			return
		}
	more:
		for len(batch) < 64 {
			select {
			case r := <-c.q:
				batch = append(batch, r)
			default:
				break more
			}
		}
		var sb strings.Builder
		args := make([]any, 0, 3*len(batch))
		sb.WriteString("INSERT INTO floor_rx (id, jws, answer) VALUES ")
		for k, r := range batch {
			if k > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "($%d, $%d, $%d)", 3*k+1, 3*k+2, 3*k+3)
			args = append(args, r.id, r.jws, r.answer)
		}
		_, err := db.Exec(sb.String(), args...) // one statement, its own durable commit
		for _, r := range batch {
			r.err <- err
		}
	}
}

package trustapi_test

import (
	"crypto"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/holder"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
)

// from is an anonymous TLS client whose connections leave from ip (any
// address of 127.0.0.0/8 on Linux's loopback).
func (e *env) from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: e.roots}}}
}

// auditAfter reads every audit event after seq.
func (e *env) auditAfter(seq int64) []audit.Event {
	e.t.Helper()
	var out []audit.Event
	for {
		page, err := e.db.ListAudit(ctx, store.AuditFilter{AfterSeq: seq, Limit: 1000})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		seq = page[len(page)-1].Seq
	}
}

func (e *env) lastAuditSeq() int64 {
	evs := e.auditAfter(0)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// holderToken is what `rxctl token revoke` sends: a revocation request
// signed with the certificate's own key.
func holderToken(t *testing.T, cred tls.Certificate, reason string) []byte {
	t.Helper()
	out, err := holder.Sign(cred.PrivateKey.(crypto.Signer), holder.Request{V: 1, Type: holder.Type, Serial: pki.SerialHex(cred.Leaf.SerialNumber),
		Reason: reason, IssuedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return []byte(out)
}

// TestAnonymousRevocationFlood is the red team's attack: a thousand junk
// holder revocation requests from one address. Each used to leave a
// permanent audit row. Now the address is throttled (429 with
// Retry-After), the refusals are summarised, a few rows per minute at
// most, and a holder elsewhere can still revoke.
func TestAnonymousRevocationFlood(t *testing.T) {
	e := newEnv(t)
	card := e.credential(pki.RolePractitioner, "practitioner-signing", nil)
	before := e.lastAuditSeq()
	attacker := e.from("127.0.0.1")
	const flood = 1000
	statuses := map[int]int{}
	for i := 0; i < flood; i++ {
		r := e.do(attacker, "POST", e.public.URL+"/v1/revocations", "application/jose", []byte("junk."+strconv.Itoa(i)+".junk"))
		statuses[r.status]++
		if r.status == http.StatusTooManyRequests && statuses[r.status] == 1 {
			if r.problem.Code != "rate-limited" || !strings.HasPrefix(r.ctype, "application/problem+json") {
				t.Fatalf("429 answer: %s %s", r.ctype, r.body)
			}
		}
	}
	if statuses[http.StatusTooManyRequests] < flood*9/10 {
		t.Fatalf("answers to %d junk requests from one address: %v; want nearly all 429", flood, statuses)
	}
	// Retry-After tells the client when to come back.
	resp, err := attacker.Post(e.public.URL+"/v1/revocations", "application/jose", strings.NewReader("junk"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusTooManyRequests || err != nil || s < 1 {
		t.Fatalf("after the burst: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// The holder's real request, from its own address, is served; from
	// the attacker's address it would wait with everyone else there.
	if r := e.do(attacker, "POST", e.public.URL+"/v1/revocations", "application/jose", holderToken(t, card, "keyCompromise")); r.status != http.StatusTooManyRequests {
		t.Fatalf("a request from the throttled address: %d %s", r.status, r.body)
	}
	if r := e.do(e.from("127.0.0.2"), "POST", e.public.URL+"/v1/revocations", "application/jose", holderToken(t, card, "keyCompromise")); r.status != http.StatusOK {
		t.Fatalf("the holder's revocation from another address: %d %s", r.status, r.body)
	}
	if st, _ := e.db.CertificateStatus(ctx, card.Leaf.SerialNumber); st.Status != revoke.Revoked {
		t.Fatalf("status after the holder's revocation: %s", st.Status)
	}

	e.flushRefusals()
	rows := e.auditAfter(before)
	summarised := 0
	var individual []audit.Event
	for _, ev := range rows {
		if ev.Object == audit.TallyObject {
			n, _ := strconv.Atoi(ev.Detail["count"])
			summarised += n
		} else {
			individual = append(individual, ev)
		}
	}
	// One row per reason (bad request, rate limited) and minute, in the
	// minute or two the test spans, and the real revocation's own row.
	if len(rows) > 5 || summarised != flood+2 || len(individual) != 1 ||
		individual[0].Object != "certificate:"+pki.SerialHex(card.Leaf.SerialNumber) || individual[0].Outcome != audit.OK {
		for _, ev := range rows {
			t.Logf("%+v", ev)
		}
		t.Fatalf("%d audit rows (%d individual) for %d refused requests and one revocation; the summaries count %d refusals",
			len(rows), len(individual), flood+2, summarised)
	}
	t.Logf("%d junk requests: %v; %d audit rows", flood, statuses, len(rows))
}

// flushRefusals records the refusal summaries now, as trustd does when
// it stops.
func (e *env) flushRefusals() {
	e.t.Helper()
	if err := e.tally.Flush(ctx, true); err != nil {
		e.t.Fatal(err)
	}
}

// A holder's revocation request is read only as the compact JWS its
// Content-Type says it is: trustd matched application/jose as a prefix, and
// revoked a certificate on a body sent as application/jose+json (the JWS
// JSON serialisation) or application/josex; a charset other than UTF-8 is
// refused too. Nothing is revoked on such a request.
func TestHolderRevocationMediaType(t *testing.T) {
	e := newEnv(t)
	card := e.credential(pki.RolePractitioner, "practitioner-signing", nil)
	for i, ct := range []string{"application/jose+json", "application/josex", "application/jose; charset=utf-16"} {
		// Each from its own address, under the per-address limit.
		r := e.do(e.from("127.0.1."+strconv.Itoa(i+1)), "POST", e.public.URL+"/v1/revocations", ct, holderToken(t, card, "keyCompromise"))
		if r.status != http.StatusBadRequest || r.problem.Code != "malformed-request" || !strings.HasPrefix(r.ctype, "application/problem+json") {
			t.Fatalf("%s: %d %s %s", ct, r.status, r.ctype, r.body)
		}
		if st, _ := e.db.CertificateStatus(ctx, card.Leaf.SerialNumber); st.Status == revoke.Revoked {
			t.Fatalf("revoked on a request sent as %s", ct)
		}
	}
	if r := e.do(e.from("127.0.1.9"), "POST", e.public.URL+"/v1/revocations", "application/jose", holderToken(t, card, "keyCompromise")); r.status != http.StatusOK {
		t.Fatalf("as application/jose: %d %s", r.status, r.body)
	}
}

// Package loadgen is the exchange's load generator (cmd/rxload): Setup has
// trustd certify the keys a load needs and writes an insured registry for
// rxd to import; Run pre-signs distinct prescriptions, submits them to rxd
// over HTTPS with concurrent vendor clients (exchange/client), then has
// pharmacies claim, dispense and close every one accepted, and reports the
// throughput, latency and refusals of each operation.
//
// It is a vendor's software, not a part of either daemon: it talks to
// trustd's admin API as two officers would (internal/client) and to rxd as
// vendors do, and links neither side (internal/archtest).
package loadgen

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nuskha/nuskha/internal/client"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/nationalid"
)

// ManifestFile is the name of the file Setup writes in its directory and
// Run reads.
const ManifestFile = "load.json"

// Officer is an officer's certificate chain and key at trustd.
type Officer struct {
	Chain []*x509.Certificate
	Key   crypto.Signer
}

// SetupOptions say where trustd is and what to make.
type SetupOptions struct {
	// Dir is where keys, certificates, the registry and the manifest are
	// written; it must be empty or absent.
	Dir string
	// AdminURL is trustd's admin API; Roots its root certificates (PEM
	// file), the anchor of everything issued.
	AdminURL string
	RootFile string
	// Requester enters each subject and enrolment; Approver, another
	// officer, approves it (dual control).
	Requester, Approver Officer
	// Practitioners and Pharmacies are how many of each to certify;
	// Persons how many insured persons the registry holds (each
	// prescription of a run is for a person of its own).
	Practitioners, Pharmacies, Persons int
	// ExchangeKey, if set, is the key URI where the exchange's signing
	// key is made (pkcs11:… on an HSM token, as production keeps it);
	// without it, an encrypted key file in Dir like every other key.
	ExchangeKey string
	Keys        *hsm.Manager
}

// Card is a certified signing key: a key URI and its chain (PEM file).
type Card struct {
	Key   string `json:"key"`
	Chain string `json:"chain"`
	// Number is the practitioner's council number or the pharmacy's
	// licence number, as in its certificate.
	Number string `json:"number"`
}

// Manifest is what Setup made, for Run and for starting rxd.
type Manifest struct {
	Root          string `json:"root"`
	Vendor        Card   `json:"vendor"`
	RxdTLS        Card   `json:"rxd_tls"`
	Exchange      Card   `json:"exchange"`
	Practitioners []Card `json:"practitioners"`
	Pharmacies    []Card `json:"pharmacies"`
	// Registry is the insured registry (CSV) for `rxd import-registry
	// -mode full`; Persons how many it holds, National its ids' first nine
	// digits' base (person i is base+i).
	Registry string `json:"registry"`
	Persons  int    `json:"persons"`
	Base     int    `json:"national_id_base"`
}

// Setup certifies, through trustd's admin API, a vendor's TLS client key,
// rxd's TLS server key, the exchange's receipt key, and the practitioners'
// and pharmacies' signing keys (software keys in password-protected files
// — a load test needs many cards, not tokens); writes a registry of
// eligible persons; and writes the manifest. It returns the manifest's
// path.
func Setup(ctx context.Context, o SetupOptions) (string, error) {
	if o.Practitioners < 1 || o.Pharmacies < 1 || o.Persons < 1 {
		return "", errors.New("loadgen: at least one practitioner, one pharmacy and one person")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return "", err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", fmt.Errorf("%s is not empty: setup writes into a new directory", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	rootPEM, err := os.ReadFile(o.RootFile)
	if err != nil {
		return "", err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return "", fmt.Errorf("%s holds no certificate", o.RootFile)
	}
	officer := func(of Officer) (*client.Client, error) {
		return client.New(client.Options{BaseURL: o.AdminURL, Roots: roots, ClientChain: of.Chain, ClientKey: of.Key})
	}
	s := &setup{dir: dir, keys: o.Keys, tag: randomHex(3)}
	if s.requester, err = officer(o.Requester); err != nil {
		return "", err
	}
	if s.approver, err = officer(o.Approver); err != nil {
		return "", err
	}
	m := Manifest{Root: filepath.Join(dir, "root.crt"), Persons: o.Persons, Base: 300000000}
	if err := os.WriteFile(m.Root, rootPEM, 0o644); err != nil {
		return "", err
	}
	service := func(kind, name string) map[string]any {
		return map[string]any{"kind": kind, "name": name, "organization": "Nuskha load test", "dns_names": []string{"localhost"}}
	}
	if m.Vendor, err = s.certify(ctx, "vendor", service("vendor", "rxload "+s.tag), "service-tls-client", ""); err != nil {
		return "", err
	}
	if m.RxdTLS, err = s.certify(ctx, "rxd-tls", service("service", "rxd "+s.tag), "service-tls-server", ""); err != nil {
		return "", err
	}
	if m.Exchange, err = s.certifyAt(ctx, o.ExchangeKey, "exchange", service("service", "rxd exchange "+s.tag), "exchange-receipt-signing", ""); err != nil {
		return "", err
	}
	for i := range o.Practitioners {
		council := fmt.Sprintf("LT-%s-%d", s.tag, i)
		c, err := s.certify(ctx, fmt.Sprintf("practitioner-%d", i), map[string]any{
			"kind": "practitioner", "name": fmt.Sprintf("دکتر آزمون %d", i), "national_id": randomNationalID(),
			"council_number": council, "profession": "physician", "specialty": "cardiology",
		}, "practitioner-signing", council)
		if err != nil {
			return "", err
		}
		m.Practitioners = append(m.Practitioners, c)
	}
	for i := range o.Pharmacies {
		licence := fmt.Sprintf("LP-%s-%d", s.tag, i)
		c, err := s.certify(ctx, fmt.Sprintf("pharmacy-%d", i), map[string]any{
			"kind": "pharmacy", "name": fmt.Sprintf("داروخانه آزمون %d", i), "licence_number": licence, "province": "IR-23",
			"responsible_name": "دکتر رضا کریمی", "responsible_council_number": "P-5521",
		}, "pharmacy-signing", licence)
		if err != nil {
			return "", err
		}
		m.Pharmacies = append(m.Pharmacies, c)
	}
	m.Registry = filepath.Join(dir, "registry.csv")
	if err := writeRegistry(m.Registry, m.Base, o.Persons); err != nil {
		return "", err
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	path := filepath.Join(dir, ManifestFile)
	return path, os.WriteFile(path, append(b, '\n'), 0o600)
}

type setup struct {
	dir                 string
	keys                *hsm.Manager
	tag                 string // tells this setup's subjects from another's at the same trustd
	requester, approver *client.Client
}

// certify makes a key in a password-protected file, registers the subject
// and has its enrolment requested by one officer and approved by the
// other, as rxctl does.
func (s *setup) certify(ctx context.Context, name string, subject map[string]any, profile, number string) (Card, error) {
	return s.certifyAt(ctx, "", name, subject, profile, number)
}

// certifyAt is certify with the key made at uri; "" is a key file in the
// directory.
func (s *setup) certifyAt(ctx context.Context, uri, name string, subject map[string]any, profile, number string) (Card, error) {
	if uri == "" {
		pass := filepath.Join(s.dir, name+".pass")
		if err := os.WriteFile(pass, []byte(randomHex(24)), 0o600); err != nil {
			return Card{}, err
		}
		uri = hsm.SoftKeyURI(filepath.Join(s.dir, name+".key"), pass)
	}
	key, err := s.keys.CreateKey(ctx, uri, hsm.ECP256)
	if err != nil {
		return Card{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return Card{}, err
	}
	subject["licence_valid_from"], subject["licence_valid_until"] = "2024-03-20", "2030-03-20"
	var made struct {
		ID string `json:"id"`
	}
	if err := s.requester.Do(ctx, "POST", "/admin/v1/subjects", subject, &made); err != nil {
		return Card{}, fmt.Errorf("registering %s: %w", name, err)
	}
	if err := s.requester.Do(ctx, "POST", "/admin/v1/enrolments", map[string]string{"subject_id": made.ID, "profile": profile,
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))}, &made); err != nil {
		return Card{}, fmt.Errorf("enrolling %s: %w", name, err)
	}
	path := "/admin/v1/enrolments/" + url.PathEscape(made.ID)
	var review struct {
		Digest string `json:"review_digest"`
	}
	if err := s.approver.Do(ctx, "GET", path, nil, &review); err != nil {
		return Card{}, err
	}
	var cert struct {
		ChainPEM string `json:"chain_pem"`
	}
	if err := s.approver.Do(ctx, "POST", path+"/approve", map[string]string{"reviewed": review.Digest}, &cert); err != nil {
		return Card{}, fmt.Errorf("approving %s: %w", name, err)
	}
	chain := filepath.Join(s.dir, name+".crt")
	if err := os.WriteFile(chain, []byte(cert.ChainPEM), 0o644); err != nil {
		return Card{}, err
	}
	return Card{Key: uri, Chain: chain, Number: number}, nil
}

// registryHeader is rxd's registry format (docs/rxd.md).
const registryHeader = "national_id,insurance_number,fund,main_national_id,relation,coverage_start,coverage_end,status,birth_date,sex,contributions,supp_insurer,supp_plan,supp_start,supp_end,supp_caps\n"

// writeRegistry writes n main insureds, every one eligible from 1404
// through 1408 (2025–2030): pensioners, who pay no contributions, and
// salaried persons who paid every month of those years; every third has
// supplementary insurance.
func writeRegistry(path string, base, n int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var paid strings.Builder
	for y := 1404; y <= 1408; y++ {
		for m := 1; m <= 12; m++ {
			if paid.Len() > 0 {
				paid.WriteByte('|')
			}
			fmt.Fprintf(&paid, "%d-%02d:30", y, m)
		}
	}
	w.WriteString(registryHeader)
	for i := range n {
		fund, contributions := "pensioner", ""
		if i%2 == 1 {
			fund, contributions = "salaried", paid.String()
		}
		supp := ",,,,"
		if i%3 == 0 {
			supp = "دی,gold,1404-01-01,,drug=50000000|lab=20000000|imaging=30000000"
		}
		fmt.Fprintf(w, "%s,LT-%d,%s,,,1395-01-01,,active,%d-%02d-%02d,%s,%s,%s\n",
			NationalID(base, i), i, fund, 1330+i%60, i%12+1, i%28+1, []string{"female", "male"}[i%2], contributions, supp)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// NationalID is the i-th person's national id: the nine digits base+i and
// their check digit.
func NationalID(base, i int) string {
	first9 := fmt.Sprintf("%09d", base+i)
	c, err := nationalid.CheckDigit(first9)
	if err != nil {
		panic(err) // nine digits always have one
	}
	return first9 + string(c)
}

func randomNationalID() string {
	b := make([]byte, 4)
	for {
		_, _ = rand.Read(b)
		id := NationalID(int(uint32(b[0])<<16|uint32(b[1])<<8|uint32(b[2]))%900000000+100000000, 0)
		if nationalid.Valid(id) {
			return id
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ReadManifest reads a manifest Setup wrote.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki/keycheck"
)

func tokenKeygen(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "token keygen")
	kf := addKeyFlags(fs)
	alg := fs.String("alg", "EC-P256", "key type: EC-P256, EC-P384, RSA-2048, RSA-3072 (as the card supports)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	a, err := hsm.ParseAlgorithm(*alg)
	if err != nil {
		return usageError{err}
	}
	uri, err := kf.URI()
	if err != nil {
		return err
	}
	k, err := e.keys.CreateKey(ctx, uri, a)
	if err != nil {
		return err
	}
	return printKey(e, k)
}

func printKey(e *env, k hsm.Key) error {
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return err
	}
	kt, _ := keycheck.Type(k.Public())
	h := sha256.Sum256(spki)
	u, _ := hsm.ParseURI(k.URI())
	delete(u.Query, "pin-source")
	return printJSON(e.stdout, map[string]string{"key_uri": u.String(), "key_type": kt, "spki_sha256": hex.EncodeToString(h[:])})
}

func tokenCSR(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "token csr")
	kf := addKeyFlags(fs)
	out := fs.String("out", "", "where to write the CSR (PEM); default standard output")
	cn := fs.String("cn", "Nuskha enrolment", "common name in the CSR (informational: the certificate's names come from the registry)")
	k, _, err := openKey(ctx, e, fs, kf, args)
	if err != nil {
		return err
	}
	if _, err := keycheck.Check(k.Public()); err != nil {
		return fmt.Errorf("this key would be refused at enrolment: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: *cn}}, k)
	if err != nil {
		return fmt.Errorf("signing the CSR on the token: %w", err)
	}
	return writeOut(e.stdout, *out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func tokenImportCert(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "token import-cert")
	kf := addKeyFlags(fs)
	certFile := fs.String("cert", "", "the issued certificate (PEM; the first certificate is used)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *certFile == "" {
		return usageError{errors.New("-cert is required")}
	}
	uri, err := kf.URI()
	if err != nil {
		return err
	}
	certs, err := pemutil.ReadCertificateBundle(*certFile)
	if err != nil {
		return err
	}
	if err := e.keys.StoreCertificate(ctx, uri, certs[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "certificate %x written to the token beside its key\n", certs[0].SerialNumber)
	return nil
}

func tokenShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "token show")
	k, uri, err := openKey(ctx, e, fs, addKeyFlags(fs), args)
	if err != nil {
		return err
	}
	if err := printKey(e, k); err != nil {
		return err
	}
	c, err := e.keys.LoadCertificate(ctx, uri)
	if errors.Is(err, hsm.ErrCertNotFound) {
		fmt.Fprintln(e.stdout, "no certificate on the token for this key yet")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "certificate: serial %x, subject %q, valid until %s\n", c.SerialNumber, c.Subject.String(), c.NotAfter.UTC().Format("2006-01-02"))
	return nil
}

// openKey parses the command's flags and opens the key they select.
func openKey(ctx context.Context, e *env, fs *flag.FlagSet, kf keyFlags, args []string) (hsm.Key, string, error) {
	if err := e.parse(fs, args); err != nil {
		return nil, "", err
	}
	uri, err := kf.URI()
	if err != nil {
		return nil, "", err
	}
	k, err := e.keys.OpenKey(ctx, uri)
	return k, uri, err
}

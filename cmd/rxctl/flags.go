package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.step.sm/crypto/pemutil"
	"golang.org/x/term"

	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/client"
	"github.com/nuskha/nuskha/internal/hsm"
)

func newFlags(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("rxctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parse parses a command's flags. On cli.ErrHelp the command MUST return
// at once: help never acts.
func (e *env) parse(fs *flag.FlagSet, args []string) error {
	return cli.Parse(fs, args, e.stdout, e.stderr)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// keyFlags select a key on a PKCS#11 token the way IT support names it, or
// by a full URI.
type keyFlags struct {
	uri, module, token, label, id, pinFile *string
}

func addKeyFlags(fs *flag.FlagSet) keyFlags {
	return keyFlags{
		uri:     fs.String("key-uri", "", "full key URI (pkcs11:… or softkey:…); overrides the flags below"),
		module:  fs.String("module", envOr("NUSKHA_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"), "PKCS#11 module (the smart card's middleware)"),
		token:   fs.String("token", "", "token label (tokens are chosen by label, never by slot)"),
		label:   fs.String("key-label", "rx-signing", "key label (CKA_LABEL)"),
		id:      fs.String("key-id", "", "key id (CKA_ID) in hex, e.g. 01"),
		pinFile: fs.String("pin-file", "", "file holding the token PIN; without it, rxctl asks"),
	}
}

func (k keyFlags) URI() (string, error) {
	if *k.uri != "" {
		return *k.uri, nil
	}
	if *k.token == "" {
		return "", usageError{errors.New("-token (the token label) or -key-uri is required")}
	}
	var id []byte
	if *k.id != "" {
		b, err := hex.DecodeString(*k.id)
		if err != nil {
			return "", usageError{fmt.Errorf("-key-id: %v", err)}
		}
		id = b
	}
	return hsm.PKCS11URI(*k.module, *k.token, *k.label, id, *k.pinFile), nil
}

// serverFlags reach trustd.
type serverFlags struct {
	admin, public, caFile, cert, key *string
}

func addServerFlags(fs *flag.FlagSet) serverFlags {
	return serverFlags{
		admin:  fs.String("admin", envOr("NUSKHA_ADMIN_URL", "https://127.0.0.1:8443"), "trustd admin API"),
		public: fs.String("public", envOr("NUSKHA_PUBLIC_URL", "https://127.0.0.1:8444"), "trustd public API"),
		caFile: fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "root certificate(s) to trust for trustd's TLS (required)"),
		cert:   fs.String("cert", envOr("NUSKHA_OFFICER_CERT", ""), "officer certificate chain (PEM)"),
		key:    fs.String("key", envOr("NUSKHA_OFFICER_KEY", ""), "officer key URI (softkey:… or pkcs11:…)"),
	}
}

// addPublicFlags is addServerFlags for commands that only use the public
// API (and so take no officer credentials).
func addPublicFlags(fs *flag.FlagSet) serverFlags {
	empty := ""
	return serverFlags{
		admin:  &empty,
		public: fs.String("public", envOr("NUSKHA_PUBLIC_URL", "https://127.0.0.1:8444"), "trustd public API"),
		caFile: fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "root certificate(s) to trust for trustd's TLS (required)"),
		cert:   &empty,
		key:    &empty,
	}
}

func (s serverFlags) roots() (*x509.CertPool, error) {
	if *s.caFile == "" {
		return nil, usageError{errors.New("-ca-file (trustd's root certificate) is required")}
	}
	certs, err := pemutil.ReadCertificateBundle(*s.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// officer returns an admin API client authenticated as the officer.
func (s serverFlags) officer(ctx context.Context, e *env) (*client.Client, error) {
	roots, err := s.roots()
	if err != nil {
		return nil, err
	}
	if *s.cert == "" || *s.key == "" {
		return nil, usageError{errors.New("-cert and -key (the officer's credentials) are required")}
	}
	chain, err := pemutil.ReadCertificateBundle(*s.cert)
	if err != nil {
		return nil, err
	}
	key, err := e.keys.OpenKey(ctx, *s.key)
	if err != nil {
		return nil, err
	}
	return client.New(client.Options{BaseURL: *s.admin, Roots: roots, ClientChain: chain, ClientKey: key})
}

// anonymous returns a public API client.
func (s serverFlags) anonymous() (*client.Client, error) {
	roots, err := s.roots()
	if err != nil {
		return nil, err
	}
	return client.New(client.Options{BaseURL: *s.public, Roots: roots})
}

// printJSON prints v indented for people, with &, < and > as written (a
// rule's "a && b" must not read "a \u0026\u0026 b"). A server's answer
// (json.RawMessage), compact as the APIs send it, is indented too.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeOut writes data to path, or to w when path is "" or "-".
func writeOut(w io.Writer, path string, data []byte) error {
	if path == "" || path == "-" {
		_, err := w.Write(data)
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// promptPIN reads a PIN from the terminal without echo. Only an
// interactive user is asked; scripts give pin-source files.
func promptPIN(_ context.Context, what string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: no terminal to ask on; give -pin-file", hsm.ErrNoPIN, what)
	}
	defer tty.Close()
	fmt.Fprintf(tty, "PIN for %s: ", what)
	pin, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("reading PIN: %w", err)
	}
	return []byte(strings.TrimSpace(string(pin))), nil
}

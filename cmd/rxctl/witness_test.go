package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/mod/sumdb/note"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/witnesstest"
	"github.com/nuskha/nuskha/internal/tlog"
)

// litewitness is torchwood's witness (filippo.io/torchwood/cmd/litewitness,
// a tool of this module): an implementation of C2SP tlog-witness that is
// not ours, run as its operators run it — a child process with its key in
// an ssh-agent (here one served in process) and its logs added with
// witnessctl — behind a TLS front, as it expects.
type litewitness struct {
	vkey string // its cosignature/v1 verifier key
	url  string // its submission prefix, over HTTPS
	srv  *httptest.Server
}

func startLitewitness(t *testing.T, name, logOrigin, logVkey string) *litewitness {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build litewitness: %v", err)
	}
	bin := t.TempDir()
	if out, err := exec.Command(goTool, "build", "-o", bin, "filippo.io/torchwood/cmd/litewitness", "filippo.io/torchwood/cmd/witnessctl").CombinedOutput(); err != nil {
		t.Fatalf("go build litewitness: %v\n%s", err, out)
	}
	// A unix socket's path is short: not under t.TempDir's long name.
	dir, err := os.MkdirTemp("", "lw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}

	db := filepath.Join(dir, "litewitness.db")
	for _, args := range [][]string{
		{"add-log", "-db", db, "-origin", logOrigin},
		{"add-key", "-db", db, "-origin", logOrigin, "-key", logVkey},
	} {
		if out, err := exec.Command(filepath.Join(bin, "witnessctl"), args...).CombinedOutput(); err != nil {
			t.Fatalf("witnessctl %s: %v\n%s", args[0], err, out)
		}
	}
	// A port the kernel chose, given back for litewitness to listen on.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	var logs bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "litewitness"), "-db", db, "-name", name, "-ssh-agent", sock,
		"-key", ssh.FingerprintSHA256(sshPub), "-listen", addr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("litewitness:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("litewitness does not listen on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling for the child's listener
	}
	target, _ := url.Parse("http://" + addr)
	srv := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(srv.Close)

	// Its key, as its operator publishes it: the cosignature/v1 form of
	// the Ed25519 key under its name.
	plain, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := fnote.VKeyToCosignatureV1(plain)
	if err != nil {
		t.Fatal(err)
	}
	return &litewitness{vkey: vkey, url: srv.URL, srv: srv}
}

// TestAuditVerifyWitnessed: the log submits its checkpoints to an
// independent witness (litewitness), which checks them against what it
// cosigned before and cosigns; the log serves the cosigned checkpoint, and
// rxctl audit verify -witness accepts it, and refuses it when the quorum
// asked is not met or the witness's key is not the one named.
func TestAuditVerifyWitnessed(t *testing.T) {
	ctx := context.Background()
	a := newAuditedLog(t, sqlstore.SQLite, noteKeyForTest(t, auditOrigin))
	w := startLitewitness(t, "witness.test/lw1", auditOrigin, a.vkey)
	l, err := tlog.New(a.store, tlog.Config{Origin: auditOrigin, Key: a.key, Witnesses: []tlog.Witness{{VerifierKey: w.vkey, URL: w.url}},
		WitnessHTTP: w.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	a.log = l
	_, otherVkey := witnesstest.Key(t, "witness.test/other")
	_, impostor := witnesstest.Key(t, "witness.test/lw1") // its name, another key
	state := filepath.Join(t.TempDir(), "state")

	a.grow(0, 20, "officer-1")
	// Not cosigned yet: refused, whatever the log's signature says.
	if _, stderr, code := a.verify("-tofu", "-witness", w.vkey, "-witness-wait", "0s"); code == exitOK || !strings.Contains(stderr, "0 of the 1 cosignatures required") {
		t.Fatalf("an uncosigned checkpoint was accepted (exit %d): %s", code, stderr)
	}
	if err := l.SubmitToWitnesses(ctx); err != nil {
		t.Fatalf("litewitness did not cosign: %v", err)
	}
	stdout, stderr, code := a.verify("-witness", w.vkey, "-state", state, "-tofu")
	if code != exitOK || !strings.Contains(stdout, "cosigned by 1 of the 1 witnesses named (quorum 1)") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}

	// The log grows; litewitness checks the proof from the 20 it cosigned.
	a.grow(20, 300, "officer-2")
	if err := l.SubmitToWitnesses(ctx); err != nil {
		t.Fatalf("litewitness did not cosign the log grown: %v", err)
	}
	stdout, stderr, code = a.verify("-witness", w.vkey, "-witness", otherVkey, "-witness-quorum", "1", "-state", state)
	if code != exitOK || !strings.Contains(stdout, "consistent with the 20 entries remembered") || !strings.Contains(stdout, "cosigned by 1 of the 2") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"quorum unmet", []string{"-witness", w.vkey, "-witness", otherVkey}, "1 of the 2 cosignatures required"},
		{"another key under the witness's name", []string{"-witness", impostor}, "0 of the 1 cosignatures required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := a.verify(append(tc.args, "-tofu", "-witness-wait", "0s")...)
			if code == exitOK || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want a refusal about %q: %s", code, tc.want, stderr)
			}
		})
	}
	for _, args := range [][]string{
		{"-witness-quorum", "1"},
		{"-witness", w.vkey, "-witness-quorum", "2"},
		{"-witness", a.vkey},
	} {
		if _, _, code := a.verify(args...); code != exitRefused {
			t.Errorf("%q: exit %d, want a usage error", args, code)
		}
	}
}

// TestWitnessQuorumOneKeyOneWitness: one Ed25519 key given under two
// names is refused as -witness keys — a cosignature/v1 signature does not
// sign the name, so it would count twice toward the quorum — while the
// same key given twice under one name counts once.
func TestWitnessQuorumOneKeyOneWitness(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	vkey := func(name string) string {
		plain, err := note.NewEd25519VerifierKey(name, pub)
		if err != nil {
			t.Fatal(err)
		}
		k, err := fnote.VKeyToCosignatureV1(plain)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if _, err := witnessQuorum([]string{vkey("witness.example/w1"), vkey("witness.example/w2")}, 2); err == nil || !strings.Contains(err.Error(), "one key, one witness") {
		t.Fatalf("one key under two names: %v", err)
	}
	w, err := witnessQuorum([]string{vkey("witness.example/w1"), vkey("witness.example/w1")}, 0)
	if err != nil || w.quorum != 1 || len(w.verifiers) != 1 {
		t.Fatalf("one key given twice: %+v, %v", w, err)
	}
}

// Command rxctl is the Nuskha client for every role: a practitioner's IT
// support making a key and CSR on a smart card and writing the certificate
// back, security officers entering and approving enrolments, and anyone
// fetching certificates.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	exclient "github.com/nuskha/nuskha/exchange/client"
	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/client"
	"github.com/nuskha/nuskha/internal/hsm"
)

func main() {
	keys := hsm.NewManager(promptPIN)
	code := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, keys)
	keys.Close()
	os.Exit(code)
}

// Exit codes: 0 done, 1 failed, 2 refused by the server or bad usage, 3
// judged and not allowed (rules check).
const (
	exitOK         = 0
	exitFailed     = 1
	exitRefused    = 2
	exitNotAllowed = 3
)

// errNotAllowed is a rules check whose answer allows not everything: the
// command did its job, and the answer is no.
var errNotAllowed = errors.New("not allowed: see the violations above")

const usage = `usage: rxctl <group> <command> [flags]

  token keygen       make a signing key on a PKCS#11 token (smart card)
  token csr          make a CSR with the key on the token
  token import-cert  write the issued certificate back to the token
  token show         show the key and certificate on the token
  token revoke       revoke the token's certificate, signing the request with its key (holder)

  subject add        register a practitioner, pharmacy, centre, vendor or officer (officer)
  subject update     change a registry entry: a restriction at once, the rest once a second officer approves (officer)
  subject approve-change|reject-change   decide a registry change (a different officer)
  subject changes|show-change            read registry changes (officer)
  subject show|list  read the registry (officer)

  enrol request      enter an enrolment: subject, profile and CSR (first officer)
  enrol approve      approve what it certifies and issue the certificate (a different officer)
  enrol reject       refuse it (officer)
  enrol show|list    read enrolments (officer)

  cert fetch         fetch a certificate by enrolment id or serial (anyone)
  cert status        ask trustd for a certificate's status (anyone)
  cert check         check a certificate offline against a trust bundle, or online by OCSP
  cert revoke        revoke a certificate for good (officer; an officer's certificate
                     with -request, and a second officer approves)
  cert hold|release  suspend a certificate or lift the suspension (officer; a second approves)
  change approve|reject|list   decide holds, releases and requested revocations (a different officer)

  trust pull         fetch and verify the signed trust bundle for offline use

  rx sign            sign a prescription with the key on the smart card (practitioner)
  rx verify          check a signed document (prescription, dispense record, cancellation, or the
                     exchange's session, paper prescription, acknowledgement or receipt), offline with a bundle
  rx dispense        sign a dispense record for a prescription (pharmacy, paraclinic centre); with
                     -claim, record it at rxd under the claim
  rx cancel          sign the cancellation of a prescription (its prescriber); with -rxd, submit it

  session open       sign a session document on the card and open a session at rxd (pharmacy,
                     paraclinic centre, practitioner); the token is kept in the -session file
  session close      end the session
  rx prescribe       sign a prescription on the card and submit it to rxd: tracking code, per-item
                     outcome, the exchange's acknowledgement (practitioner)
  rx lookup          find a prescription by tracking code and national id (session)
  rx claim           claim a prescription for the organisation: claim id and secret (session)
  rx release         give a claim up (session)
  rx close           close a claim and keep the receipt the exchange signs (session)
  rx paper           enter and dispense a paper prescription signed on the card (pharmacy)
  rx history         a patient's prescriptions and dispenses (service)
  rx access-log      who acted on a patient's prescriptions, from rxd's audit log (service)
  audit list         read the audit trail (officer)
  audit verify       check a tamper-evident audit log (trustd's, rxd's): its checkpoint under the
                     bundle's key, consistent with the last one seen; entries, the stored database,
                     archives of pruned entries (auditor)

  eligibility check  is a person covered on a date, and if not why (vendor, service; rxd)
  rules check        judge a draft prescription or dispense: coverage, cost, violated rules;
                     exit 3 when something is not allowed (rxd)
  rules show         the rule set in force (rxd)
  catalogue search   find drugs and services by code or name, Persian or Latin (rxd)

  version            which build this is: version, commit, Go version

Exit status: 0 done; 1 failed; 2 refused by the server, or bad usage;
3 rules check answered, and not everything is allowed.

Run "rxctl <group> <command> -h" for flags. Server and credentials can come
from NUSKHA_ADMIN_URL, NUSKHA_PUBLIC_URL, NUSKHA_CA_FILE, NUSKHA_OFFICER_CERT
and NUSKHA_OFFICER_KEY; rxd and a vendor's or service's client credentials
from NUSKHA_RXD_URL, NUSKHA_CLIENT_CERT and NUSKHA_CLIENT_KEY.`

type command func(ctx context.Context, e *env, args []string) error

type env struct {
	stdout, stderr io.Writer
	keys           *hsm.Manager
}

var commands = map[string]map[string]command{
	"token": {"keygen": tokenKeygen, "csr": tokenCSR, "import-cert": tokenImportCert, "show": tokenShow, "revoke": tokenRevoke},
	"subject": {"add": subjectAdd, "update": subjectUpdate, "show": subjectShow, "list": subjectList,
		"approve-change": subjectDecideChange(true), "reject-change": subjectDecideChange(false),
		"changes": subjectChanges, "show-change": subjectShowChange},
	"enrol": {"request": enrolRequest, "approve": enrolApprove, "reject": enrolReject, "show": enrolShow, "list": enrolList},
	"cert": {"fetch": certFetch, "revoke": certRevoke, "hold": certHold, "release": certRelease, "status": certStatus,
		"check": certCheck},
	"change": {"approve": changeDecide(true), "reject": changeDecide(false), "list": changeList},
	"trust":  {"pull": trustPull},
	"rx": {"sign": rxSign, "verify": rxVerify, "dispense": rxDispense, "cancel": rxCancel,
		"prescribe": rxPrescribe, "lookup": rxLookup, "claim": rxClaim, "release": rxRelease, "close": rxClose,
		"paper": rxPaper, "history": rxHistory, "access-log": rxAccessLog},
	"session": {"open": sessionOpen, "close": sessionClose},
	"audit":   {"list": auditList, "verify": auditVerify},

	"eligibility": {"check": eligibilityCheck},
	"rules":       {"check": rulesCheck, "show": rulesShow},
	"catalogue":   {"search": catalogueSearch},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, keys *hsm.Manager) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitRefused
	}
	switch {
	case args[0] == "help" && len(args) > 2:
		// "rxctl help cert revoke" is "rxctl cert revoke -h".
		return run(ctx, []string{args[1], args[2], "-h"}, stdout, stderr, keys)
	case args[0] == "help" && len(args) == 2:
		return run(ctx, []string{args[1], "-h"}, stdout, stderr, keys)
	case args[0] == "help" || cli.IsHelp(args[0]):
		fmt.Fprintln(stdout, usage)
		return exitOK
	case args[0] == "version" || args[0] == "-version" || args[0] == "--version":
		return report(stderr, cli.Version("rxctl", args[1:], stdout, stderr))
	}
	group, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "rxctl: unknown group %q\n%s\n", args[0], usage)
		return exitRefused
	}
	if len(args) < 2 {
		fmt.Fprintln(stderr, groupUsage(args[0]))
		return exitRefused
	}
	if args[1] == "help" || cli.IsHelp(args[1]) {
		fmt.Fprintln(stdout, groupUsage(args[0]))
		return exitOK
	}
	cmd, ok := group[args[1]]
	if !ok {
		fmt.Fprintf(stderr, "rxctl: unknown command %q %q\n%s\n", args[0], args[1], groupUsage(args[0]))
		return exitRefused
	}
	return report(stderr, cmd(ctx, &env{stdout: stdout, stderr: stderr, keys: keys}, args[2:]))
}

// report prints err and returns the exit code for it.
func report(stderr io.Writer, err error) int {
	var p *client.Problem
	var xp *exclient.Problem
	var ue usageError
	var cue cli.UsageError
	switch {
	case err == nil, errors.Is(err, cli.ErrHelp):
		return exitOK
	case errors.Is(err, errNotAllowed):
		fmt.Fprintf(stderr, "rxctl: %v\n", err)
		return exitNotAllowed
	case errors.As(err, &p):
		fmt.Fprintf(stderr, "rxctl: refused: %v\n", p)
		return exitRefused
	case errors.As(err, &xp):
		fmt.Fprintf(stderr, "rxctl: refused: %v\n", xp)
		return exitRefused
	case errors.As(err, &ue), errors.As(err, &cue):
		fmt.Fprintf(stderr, "rxctl: %v\n", err)
		return exitRefused
	}
	fmt.Fprintf(stderr, "rxctl: %v\n", err)
	return exitFailed
}

// groupUsage is the part of the usage about one group's commands.
func groupUsage(group string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: rxctl %s <command> [flags]\n\n", group)
	for _, line := range strings.Split(usage, "\n") {
		if strings.HasPrefix(line, "  "+group+" ") {
			b.WriteString(line + "\n")
		}
	}
	fmt.Fprintf(&b, "\nRun \"rxctl %s <command> -h\" for flags.", group)
	return b.String()
}

// usageError is a command line that cannot be run as given; cli.Parse
// returns a cli.UsageError for the same.
type usageError struct{ error }

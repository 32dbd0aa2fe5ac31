package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
)

func readJSONFile(path string) (json.RawMessage, error) {
	if path == "" {
		return nil, usageError{errors.New("-file is required")}
	}
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, usageError{errors.New(path + " is not valid JSON")}
	}
	return json.RawMessage(b), nil
}

// officerCall runs one admin API call and prints its answer.
func officerCall(ctx context.Context, e *env, sf serverFlags, method, path string, in any) error {
	return officerCreate(ctx, e, sf, false, method, path, in)
}

// addQuiet is the -q flag of commands that make something with an id, so
// that a script can keep the id: id=$(rxctl subject add -q …).
func addQuiet(fs *flag.FlagSet) *bool {
	return fs.Bool("q", false, "print only the id of what was made")
}

// officerCreate is officerCall for a call that makes something: with
// idOnly, only the answer's id is printed.
func officerCreate(ctx context.Context, e *env, sf serverFlags, idOnly bool, method, path string, in any) error {
	c, err := sf.officer(ctx, e)
	if err != nil {
		return err
	}
	var out json.RawMessage
	if err := c.Do(ctx, method, path, in, &out); err != nil {
		return err
	}
	if idOnly {
		var made struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(out, &made); err != nil || made.ID == "" {
			return fmt.Errorf("the answer names no id: %s", out)
		}
		_, err = fmt.Fprintln(e.stdout, made.ID)
		return err
	}
	return printJSON(e.stdout, out)
}

func oneArg(args []string, what string) (string, error) {
	if len(args) != 1 {
		return "", usageError{errors.New("give exactly one " + what)}
	}
	return args[0], nil
}

func subjectAdd(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "subject add")
	sf := addServerFlags(fs)
	file := fs.String("file", "", "subject JSON (fields: docs/trustd.md), or - for standard input")
	quiet := addQuiet(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	body, err := readJSONFile(*file)
	if err != nil {
		return err
	}
	return officerCreate(ctx, e, sf, *quiet, "POST", "/admin/v1/subjects", body)
}

func subjectUpdate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "subject update")
	sf := addServerFlags(fs)
	file := fs.String("file", "", "the whole subject JSON with the version you edited")
	quiet := fs.Bool("q", false, "print only the id: of the registry change awaiting a second officer, or of the subject when it took effect at once")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs.Args(), "subject id")
	if err != nil {
		return err
	}
	body, err := readJSONFile(*file)
	if err != nil {
		return err
	}
	c, err := sf.officer(ctx, e)
	if err != nil {
		return err
	}
	var out json.RawMessage
	if err := c.Do(ctx, "PUT", "/admin/v1/subjects/"+url.PathEscape(id), body, &out); err != nil {
		return err
	}
	var answer struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(out, &answer); err != nil {
		return err
	}
	// An identity change or a wider licence waits for a second officer;
	// say so where a script's captured output does not hide it.
	if answer.State == "pending" {
		fmt.Fprintf(e.stderr, "rxctl: the change awaits a second officer: rxctl subject approve-change %s\n", answer.ID)
	}
	if *quiet {
		_, err = fmt.Fprintln(e.stdout, answer.ID)
		return err
	}
	return printJSON(e.stdout, out)
}

// subjectDecideChange approves or rejects a registry change.
func subjectDecideChange(approve bool) command {
	verb := "approve"
	if !approve {
		verb = "reject"
	}
	return func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, "subject "+verb+"-change")
		sf := addServerFlags(fs)
		comment := fs.String("comment", "", "optional note")
		if err := e.parse(fs, args); err != nil {
			return err
		}
		id, err := oneArg(fs.Args(), "registry change id")
		if err != nil {
			return err
		}
		return officerCall(ctx, e, sf, "POST", "/admin/v1/subject-changes/"+url.PathEscape(id)+"/"+verb, map[string]string{"comment": *comment})
	}
}

func subjectShowChange(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "subject show-change")
	sf := addServerFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs.Args(), "registry change id")
	if err != nil {
		return err
	}
	return officerCall(ctx, e, sf, "GET", "/admin/v1/subject-changes/"+url.PathEscape(id), nil)
}

func subjectChanges(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "subject changes")
	sf := addServerFlags(fs)
	pending := fs.Bool("pending", true, "only those awaiting a decision")
	limit := fs.Int("limit", 100, "at most this many")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	return officerCall(ctx, e, sf, "GET", fmt.Sprintf("/admin/v1/subject-changes?pending=%t&limit=%d", *pending, *limit), nil)
}

func subjectShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "subject show")
	sf := addServerFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs.Args(), "subject id")
	if err != nil {
		return err
	}
	return officerCall(ctx, e, sf, "GET", "/admin/v1/subjects/"+url.PathEscape(id), nil)
}

func subjectList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "subject list")
	sf := addServerFlags(fs)
	kind := fs.String("kind", "", "practitioner, pharmacy, paraclinic, vendor, service or officer")
	q := fs.String("q", "", "search names and registration numbers")
	limit := fs.Int("limit", 100, "at most this many")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	v := url.Values{}
	setIf(v, "kind", *kind)
	setIf(v, "q", *q)
	v.Set("limit", strconv.Itoa(*limit))
	return officerCall(ctx, e, sf, "GET", "/admin/v1/subjects?"+v.Encode(), nil)
}

func setIf(v url.Values, k, val string) {
	if val != "" {
		v.Set(k, val)
	}
}

func enrolRequest(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "enrol request")
	sf := addServerFlags(fs)
	subject := fs.String("subject", "", "registry subject id")
	profile := fs.String("profile", "practitioner-signing", "certificate profile")
	csrFile := fs.String("csr", "", "CSR made on the subject's token (PEM)")
	quiet := addQuiet(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *subject == "" || *csrFile == "" {
		return usageError{errors.New("-subject and -csr are required")}
	}
	csr, err := os.ReadFile(*csrFile)
	if err != nil {
		return err
	}
	return officerCreate(ctx, e, sf, *quiet, "POST", "/admin/v1/enrolments", map[string]string{"subject_id": *subject, "profile": *profile, "csr": string(csr)})
}

type certificateAnswer struct {
	Serial   string `json:"serial"`
	PEM      string `json:"certificate_pem"`
	ChainPEM string `json:"chain_pem"`
}

// review is what an enrolment certifies, as trustd shows it.
type review struct {
	Digest string          `json:"review_digest"`
	Review json.RawMessage `json:"review"`
	Status string          `json:"status"`
}

func enrolApprove(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "enrol approve")
	sf := addServerFlags(fs)
	out := fs.String("out", "", "also write the certificate chain (PEM) here")
	reviewed := fs.String("reviewed", "", "the review_digest you checked (enrol show); without it, what the enrolment certifies is printed on standard error and approved")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs.Args(), "enrolment id")
	if err != nil {
		return err
	}
	c, err := sf.officer(ctx, e)
	if err != nil {
		return err
	}
	path := "/admin/v1/enrolments/" + url.PathEscape(id)
	digest := *reviewed
	if digest == "" {
		// Approve what is shown here: should the request change between
		// this read and the approval, trustd refuses.
		var rv review
		if err := c.Do(ctx, "GET", path, nil, &rv); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "rxctl: approving enrolment %s (%s), which certifies:\n%s\nrxctl: review digest %s\n", id, rv.Status, rv.Review, rv.Digest)
		digest = rv.Digest
	}
	var raw json.RawMessage
	if err := c.Do(ctx, "POST", path+"/approve", map[string]string{"reviewed": digest}, &raw); err != nil {
		return err
	}
	return emitCertificate(e, raw, *out)
}

func emitCertificate(e *env, raw json.RawMessage, out string) error {
	var cert certificateAnswer
	if err := json.Unmarshal(raw, &cert); err != nil {
		return err
	}
	if out != "" {
		if err := os.WriteFile(out, []byte(cert.ChainPEM), 0o644); err != nil {
			return err
		}
	}
	return printJSON(e.stdout, raw)
}

func enrolReject(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "enrol reject")
	sf := addServerFlags(fs)
	reason := fs.String("reason", "", "why (recorded for ever)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs.Args(), "enrolment id")
	if err != nil {
		return err
	}
	return officerCall(ctx, e, sf, "POST", "/admin/v1/enrolments/"+url.PathEscape(id)+"/reject", map[string]string{"reason": *reason})
}

func enrolShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "enrol show")
	sf := addServerFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs.Args(), "enrolment id")
	if err != nil {
		return err
	}
	return officerCall(ctx, e, sf, "GET", "/admin/v1/enrolments/"+url.PathEscape(id), nil)
}

func enrolList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "enrol list")
	sf := addServerFlags(fs)
	status := fs.String("status", "", "pending, approved, issued, rejected, stale or expired")
	subject := fs.String("subject", "", "only this subject's")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	v := url.Values{}
	setIf(v, "status", *status)
	setIf(v, "subject_id", *subject)
	return officerCall(ctx, e, sf, "GET", "/admin/v1/enrolments?"+v.Encode(), nil)
}

func certFetch(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cert fetch")
	sf := addPublicFlags(fs)
	enrolment := fs.String("enrolment", "", "enrolment id")
	serial := fs.String("serial", "", "certificate serial (hex)")
	out := fs.String("out", "", "write the certificate chain (PEM) here")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	var path string
	switch {
	case *enrolment != "" && *serial == "":
		path = "/v1/enrolments/" + url.PathEscape(*enrolment) + "/certificate"
	case *serial != "" && *enrolment == "":
		path = "/v1/certificates/" + url.PathEscape(*serial)
	default:
		return usageError{errors.New("give -enrolment or -serial")}
	}
	c, err := sf.anonymous()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.Do(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	return emitCertificate(e, raw, *out)
}

func auditList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "audit list")
	sf := addServerFlags(fs)
	after := fs.Int("after", 0, "events after this sequence number")
	object := fs.String("object", "", "only events about this object (e.g. enrolment:enr_…)")
	limit := fs.Int("limit", 100, "at most this many")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	v := url.Values{}
	v.Set("after", strconv.Itoa(*after))
	v.Set("limit", strconv.Itoa(*limit))
	setIf(v, "object", *object)
	return officerCall(ctx, e, sf, "GET", "/admin/v1/audit?"+v.Encode(), nil)
}

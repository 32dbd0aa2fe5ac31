package trustapi

import (
	"bytes"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/store"
)

// subjectInput is a registry entry as officers enter it. Licence dates are
// days in Iran, Gregorian or Solar Hijri (persian.ParseDate), valid from the
// start of the first to the end of the last.
type subjectInput struct {
	Kind                     string   `json:"kind"`
	Name                     string   `json:"name"`
	NationalID               string   `json:"national_id"`
	CouncilNumber            string   `json:"council_number"`
	Profession               string   `json:"profession"`
	Specialty                string   `json:"specialty"`
	LicenceNumber            string   `json:"licence_number"`
	CentreType               string   `json:"centre_type"`
	Province                 string   `json:"province"`
	ResponsibleName          string   `json:"responsible_name"`
	ResponsibleCouncilNumber string   `json:"responsible_council_number"`
	Organization             string   `json:"organization"`
	DNSNames                 []string `json:"dns_names"`
	LicenceValidFrom         string   `json:"licence_valid_from"`
	LicenceValidUntil        string   `json:"licence_valid_until"`
	LicenceStatus            string   `json:"licence_status"`
	// Version is required on update: the version the officer edited.
	Version int `json:"version"`
}

// licenceDay reads a licence date.
func licenceDay(field, v string) (time.Time, error) {
	if strings.TrimSpace(v) == "" {
		return time.Time{}, errs.FieldError(errs.Invalid, field, "required")
	}
	d, err := persian.ParseDate(v)
	if err != nil {
		return time.Time{}, errs.FieldError(errs.Invalid, field, "%v", err)
	}
	return d, nil
}

// subject is the input as a registry entry; the registry validates it.
func (in subjectInput) subject() (*registry.Subject, error) {
	first, err := licenceDay("licence_valid_from", in.LicenceValidFrom)
	if err != nil {
		return nil, err
	}
	last, err := licenceDay("licence_valid_until", in.LicenceValidUntil)
	if err != nil {
		return nil, err
	}
	from, until := registry.LicencePeriod(first, last)
	return &registry.Subject{
		Kind: registry.Kind(in.Kind), Name: in.Name, NationalID: in.NationalID, CouncilNumber: in.CouncilNumber,
		Profession: registry.Profession(in.Profession), Specialty: in.Specialty, LicenceNumber: in.LicenceNumber,
		CentreType: registry.CentreType(in.CentreType), Province: in.Province, ResponsibleName: in.ResponsibleName,
		ResponsibleCouncilNumber: in.ResponsibleCouncilNumber, Organization: in.Organization,
		DNSNames: append([]string(nil), in.DNSNames...), LicenceValidFrom: from, LicenceValidUntil: until,
		LicenceStatus: registry.LicenceStatus(in.LicenceStatus), Version: in.Version,
	}, nil
}

// record audits an officer action; a failed write fails the request.
func (a *API) record(r *http.Request, action, object string, err error, detail map[string]string) error {
	e := audit.Event{Actor: officerFrom(r.Context()), Action: action, Object: object, Outcome: audit.OK, Detail: detail}
	if err != nil {
		e.Outcome, e.Code = audit.Refused, errs.CodeOf(err)
		if e.Code == errs.Internal || e.Code == errs.Unavailable {
			e.Outcome = audit.Failed
		}
	}
	if aerr := a.cfg.Audit.Record(r.Context(), e); aerr != nil {
		return errors.Join(err, errs.Wrap(errs.Unavailable, aerr, "the audit log is unavailable"))
	}
	return err
}

// decodeOptional reads a JSON body that may be absent.
func decodeOptional(r *http.Request, v any) error {
	body, err := httpedge.Body(r)
	if err == nil && len(bytes.TrimSpace(body)) > 0 {
		err = problem.Unmarshal(body, v)
	}
	return err
}

// createSubject decodes a new registry entry; the registry validates,
// audits and stores it.
func (a *API) createSubject(w http.ResponseWriter, r *http.Request) {
	var in subjectInput
	if err := httpedge.Decode(r, &in); err != nil {
		a.fail(w, r, a.record(r, "subject.create", "subject:new", err, nil))
		return
	}
	s, err := in.subject()
	if err != nil {
		a.fail(w, r, a.record(r, "subject.create", "subject:new", err, map[string]string{"kind": in.Kind}))
		return
	}
	if s, err = a.cfg.Registry.Create(r.Context(), officerFrom(r.Context()), s); err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/admin/v1/subjects/"+s.ID)
	problem.JSON(w, http.StatusCreated, s)
}

// updateSubject decodes an update; the registry applies one that only
// restricts the licence (200, the subject) and enters any other as a
// registry change for a second officer (202, the change).
func (a *API) updateSubject(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in subjectInput
	err := httpedge.Decode(r, &in)
	var next *registry.Subject
	if err == nil {
		next, err = in.subject()
	}
	if err != nil {
		a.fail(w, r, a.record(r, "subject.update", "subject:"+id, err, nil))
		return
	}
	s, c, err := a.cfg.Registry.Update(r.Context(), officerFrom(r.Context()), id, next, in.Version)
	switch {
	case err != nil:
		a.fail(w, r, err)
	case c != nil:
		w.Header().Set("Location", "/admin/v1/subject-changes/"+c.ID)
		problem.JSON(w, http.StatusAccepted, c)
	default:
		problem.JSON(w, http.StatusOK, s)
	}
}

func (a *API) listSubjectChanges(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	list, err := a.cfg.Registry.Changes(r.Context(), r.URL.Query().Get("pending") == "true", limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for _, c := range list {
		if c.Proposed.NationalID != "" {
			c.Proposed.NationalID = nationalid.Mask(c.Proposed.NationalID)
		}
	}
	if list == nil {
		list = []*registry.Change{}
	}
	problem.JSON(w, http.StatusOK, map[string]any{"subject_changes": list})
}

func (a *API) getSubjectChange(w http.ResponseWriter, r *http.Request) {
	c, err := a.cfg.Registry.Change(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, c)
}

// decideSubjectChange answers an approval with the subject as it now is,
// a rejection with the change.
func (a *API) decideSubjectChange(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Comment string `json:"comment"`
		}
		if err := decodeOptional(r, &in); err != nil {
			a.fail(w, r, err)
			return
		}
		c, s, err := a.cfg.Registry.DecideChange(r.Context(), officerFrom(r.Context()), r.PathValue("id"), approve, in.Comment)
		switch {
		case err != nil:
			a.fail(w, r, err)
		case approve:
			problem.JSON(w, http.StatusOK, s)
		default:
			problem.JSON(w, http.StatusOK, c)
		}
	}
}

func (a *API) getSubject(w http.ResponseWriter, r *http.Request) {
	s, err := a.store.GetSubject(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, s)
}

// listSubjects masks national ids: a list is for finding, one record for
// checking identity.
func (a *API) listSubjects(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	subs, err := a.store.ListSubjects(r.Context(), store.SubjectFilter{Kind: q.Get("kind"), Query: q.Get("q"), AfterID: q.Get("after"), Limit: limit})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for _, s := range subs {
		if s.NationalID != "" {
			s.NationalID = nationalid.Mask(s.NationalID)
		}
	}
	if subs == nil {
		subs = []*registry.Subject{}
	}
	problem.JSON(w, http.StatusOK, map[string]any{"subjects": subs})
}

type enrolmentInput struct {
	SubjectID string `json:"subject_id"`
	Profile   string `json:"profile"`
	CSR       string `json:"csr"` // PEM
}

type enrolmentView struct {
	*enrol.Request
	CSRPEM string `json:"csr_pem,omitempty"`
}

func (a *API) createEnrolment(w http.ResponseWriter, r *http.Request) {
	var in enrolmentInput
	if err := httpedge.Decode(r, &in); err != nil {
		a.fail(w, r, a.record(r, "enrolment.request", "enrolment:new", err, nil))
		return
	}
	req, err := a.cfg.Enrol.Request(r.Context(), officerFrom(r.Context()), enrol.RequestInput{SubjectID: in.SubjectID, Profile: in.Profile, CSR: []byte(in.CSR)})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/admin/v1/enrolments/"+req.ID)
	problem.JSON(w, http.StatusCreated, enrolmentView{Request: req})
}

func (a *API) getEnrolment(w http.ResponseWriter, r *http.Request) {
	e, err := a.cfg.Enrol.Enrolment(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, enrolmentView{Request: e, CSRPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: e.CSR}))})
}

func (a *API) listEnrolments(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	list, err := a.cfg.Enrol.Enrolments(r.Context(), store.EnrolmentFilter{Status: q.Get("status"), SubjectID: q.Get("subject_id"), Limit: limit})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if list == nil {
		list = []*enrol.Request{}
	}
	problem.JSON(w, http.StatusOK, map[string]any{"enrolments": list})
}

// approveInput is the optional body of an approval: the review digest the
// approving officer was shown (GET …/enrolments/{id}, review_digest).
type approveInput struct {
	Reviewed string `json:"reviewed"`
}

func (a *API) approve(w http.ResponseWriter, r *http.Request) {
	var in approveInput
	if err := decodeOptional(r, &in); err != nil {
		a.fail(w, r, a.record(r, "enrolment.approve", "enrolment:"+r.PathValue("id"), err, nil))
		return
	}
	c, err := a.cfg.Enrol.Approve(r.Context(), officerFrom(r.Context()), r.PathValue("id"), strings.TrimSpace(in.Reviewed))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusCreated, a.certificateView(c))
}

func (a *API) reject(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := httpedge.Decode(r, &in); err != nil {
		a.fail(w, r, a.record(r, "enrolment.reject", "enrolment:"+r.PathValue("id"), err, nil))
		return
	}
	e, err := a.cfg.Enrol.Reject(r.Context(), officerFrom(r.Context()), r.PathValue("id"), in.Reason)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, enrolmentView{Request: e})
}

func (a *API) listCertificates(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	list, err := a.store.ListCertificates(r.Context(), store.CertificateFilter{SubjectID: r.URL.Query().Get("subject_id"), Limit: limit})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	views := make([]certificateView, len(list))
	for i, c := range list {
		views[i] = a.certificateView(c)
	}
	problem.JSON(w, http.StatusOK, map[string]any{"certificates": views})
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	after, err := queryInt(r, "after")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	evs, err := a.store.ListAudit(r.Context(), store.AuditFilter{AfterSeq: int64(after), Object: r.URL.Query().Get("object"), Limit: limit})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if evs == nil {
		evs = []audit.Event{}
	}
	problem.JSON(w, http.StatusOK, map[string]any{"events": evs})
}

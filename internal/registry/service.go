package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store"
)

// Store is what the registry service needs from trustd's store.
type Store interface {
	OfficerRecords
	CreateSubject(ctx context.Context, s *Subject, by string, events ...audit.Event) error
	// UpdateSubject stores s if the stored version is s.Version-1
	// (otherwise store.ErrConflict).
	UpdateSubject(ctx context.Context, s *Subject, by string, events ...audit.Event) error
	CreateSubjectChange(ctx context.Context, c *Change, events ...audit.Event) error
	GetSubjectChange(ctx context.Context, id string) (*Change, error)
	ListSubjectChanges(ctx context.Context, f store.SubjectChangeFilter) ([]*Change, error)
	// DecideSubjectChange records the one decision on a change (a second
	// gives a DuplicateError). With apply (an approval) it also stores
	// apply, at the change's BaseVersion+1, in the same transaction: if
	// the subject is no longer at BaseVersion, nothing is recorded and it
	// returns store.ErrConflict.
	DecideSubjectChange(ctx context.Context, id string, approved bool, by string, at time.Time, comment string, apply *Subject, events ...audit.Event) error
}

// OfficerQuorum takes an officer out of service by running apply, unless
// fewer than two officers could then act, for nothing could be approved
// again (package revoke counts them). It serialises such removals: the
// count and apply happen under one lock.
type OfficerQuorum interface {
	WithOfficerQuorum(ctx context.Context, subjectID string, apply func() error) error
}

// Config wires a Service; every field is required.
type Config struct {
	Store  Store
	Quorum OfficerQuorum
	Audit  audit.Recorder
	Log    *slog.Logger
	Now    func() time.Time
}

// Service keeps the registry: subjects are added by one officer (their
// certificates then need a second: see package enrol), restricted by one,
// and otherwise changed by two.
type Service struct {
	cfg Config
}

// NewService checks cfg.
func NewService(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Quorum == nil || cfg.Audit == nil || cfg.Log == nil || cfg.Now == nil {
		return nil, errors.New("registry: incomplete configuration")
	}
	return &Service{cfg: cfg}, nil
}

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// done is the event of an officer's action that changes the store: the
// store appends it in the change's own transaction.
func (s *Service) done(officer, action, object string, detail map[string]string) audit.Event {
	return audit.Event{Time: s.cfg.Now().UTC(), Actor: officer, Action: action, Object: object, Outcome: audit.OK, Detail: detail}
}

// record audits an officer's action; a failed write fails it.
func (s *Service) record(ctx context.Context, officer, action, object string, err error, detail map[string]string) error {
	e := audit.Event{Actor: officer, Action: action, Object: object, Outcome: audit.OK, Detail: detail}
	if err != nil {
		e.Outcome, e.Code = audit.Refused, errs.CodeOf(err)
		if e.Code == errs.Internal || e.Code == errs.Unavailable {
			e.Outcome = audit.Failed
		}
	}
	if aerr := s.cfg.Audit.Record(ctx, e); aerr != nil {
		return errors.Join(err, errs.Wrap(errs.Unavailable, aerr, "the audit log is unavailable"))
	}
	return err
}

func duplicateSubject(err error) error {
	if f, ok := store.IsDuplicate(err); ok {
		return errs.FieldError(errs.SubjectExists, f, "a subject with this %s is already registered", strings.ReplaceAll(f, "_", " "))
	}
	return errs.Wrap(errs.Unavailable, err, "writing the registry")
}

// Create registers sub at version 1. sub is normalised and MUST be valid
// (Validate) and new (no Version); a refusal is audited and registers
// nothing.
func (s *Service) Create(ctx context.Context, officer string, sub *Subject) (*Subject, error) {
	sub.Normalize()
	err := sub.Validate()
	if err == nil && sub.Version != 0 {
		err = errs.FieldError(errs.Invalid, "version", "must be absent when creating a subject")
	}
	if err != nil {
		return nil, s.record(ctx, officer, "subject.create", "subject:new", err, map[string]string{"kind": string(sub.Kind)})
	}
	now := s.cfg.Now().UTC()
	sub.ID, sub.CreatedAt, sub.UpdatedAt = newID("sub_"), now, now
	e := s.done(officer, "subject.create", "subject:"+sub.ID, map[string]string{"kind": string(sub.Kind)})
	if err := s.cfg.Store.CreateSubject(ctx, sub, officer, e); err != nil {
		return nil, s.record(ctx, officer, "subject.create", "subject:new", duplicateSubject(err), map[string]string{"kind": string(sub.Kind)})
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	return sub, nil
}

func (s *Service) subject(ctx context.Context, id string) (*Subject, error) {
	sub, err := s.cfg.Store.GetSubject(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "no subject %s", id)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading subject %s", id)
	}
	return sub, nil
}

// Update replaces subject id, as of baseVersion (the version the officer
// edited), with next, which is normalised and MUST be valid and of the same
// kind (a refusal is audited and changes nothing). An update that only
// restricts the licence is applied at once and the subject returned; any
// other is entered as a Change for a second officer and returned instead.
// One mixing both is refused: the restriction would otherwise wait.
func (s *Service) Update(ctx context.Context, officer, id string, next *Subject, baseVersion int) (*Subject, *Change, error) {
	const action = "subject.update"
	object := "subject:" + id
	cur, err := s.subject(ctx, id)
	if err != nil {
		return nil, nil, s.record(ctx, officer, action, object, err, nil)
	}
	var restricting, others []string
	next.Normalize()
	// The kind first: the fields the other kind would need are not the
	// error.
	if next.Kind != cur.Kind {
		err = errs.FieldError(errs.Invalid, "kind", "cannot change from %s", cur.Kind)
	} else {
		err = next.Validate()
	}
	switch {
	case err != nil:
	case baseVersion == 0:
		err = errs.FieldError(errs.Invalid, "version", "the version you edited is required")
	case baseVersion != cur.Version:
		err = errs.New(errs.Conflict, "the subject changed since version %d; read it again", baseVersion)
	default:
		restricting, others = Diff(cur, next)
		if cur.Kind == pki.RoleOfficer {
			// An officer's licence ending earlier takes them out of
			// service later, unseen by the quorum check at the time:
			// a second officer decides it. Suspension takes effect now,
			// under that check.
			restricting = slices.DeleteFunc(restricting, func(f string) bool {
				if f == "licence_valid_from" || f == "licence_valid_until" {
					others = append(others, f)
					return true
				}
				return false
			})
		}
		if len(restricting) > 0 && len(others) > 0 {
			err = errs.New(errs.Invalid, "this update restricts the licence (%s) and changes %s, which needs a second officer: submit the restriction alone, then the rest",
				strings.Join(restricting, ", "), strings.Join(others, ", "))
		}
	}
	if err != nil {
		return nil, nil, s.record(ctx, officer, action, object, err, nil)
	}
	next.ID, next.CreatedAt, next.UpdatedAt, next.Version = cur.ID, cur.CreatedAt, s.cfg.Now().UTC(), cur.Version+1
	switch {
	case len(others) > 0:
		c, err := s.requestChange(ctx, officer, cur, next, others)
		return nil, c, err
	case len(restricting) == 0:
		return cur, nil, nil // nothing changes
	}
	e := s.done(officer, action, object, changeDetail(next, restricting))
	write := func() error { return s.cfg.Store.UpdateSubject(ctx, next, officer, e) }
	if now := s.cfg.Now(); cur.Kind == pki.RoleOfficer && cur.CanBeCertified(now) == nil && next.CanBeCertified(now) != nil {
		// Suspending an officer takes them out of service: never below
		// the quorum dual control needs, and never two at once.
		apply := write
		write = func() error { return s.cfg.Quorum.WithOfficerQuorum(ctx, cur.ID, apply) }
	}
	if err := write(); err != nil {
		if errors.Is(err, store.ErrConflict) {
			err = errs.New(errs.Conflict, "the subject changed since version %d; read it again", baseVersion)
		} else if errs.CodeOf(err) == errs.Internal {
			err = duplicateSubject(err)
		}
		return nil, nil, s.record(ctx, officer, action, object, err, nil)
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	return next, nil, nil
}

func changeDetail(sub *Subject, fields []string) map[string]string {
	_, last := sub.LicenceDays()
	return map[string]string{"version": strconv.Itoa(sub.Version), "fields": strings.Join(fields, ","),
		"licence_status": string(sub.LicenceStatus), "licence_valid_until": last.Format(time.DateOnly)}
}

func (s *Service) requestChange(ctx context.Context, officer string, cur, next *Subject, fields []string) (*Change, error) {
	const action = "subject.change.request"
	object := "subject:" + cur.ID
	now := s.cfg.Now().UTC()
	open, err := s.cfg.Store.ListSubjectChanges(ctx, store.SubjectChangeFilter{SubjectID: cur.ID, Undecided: true, RequestedSince: changeOpenSince(now)})
	if err != nil {
		return nil, s.record(ctx, officer, action, object, errs.Wrap(errs.Unavailable, err, "reading the subject's pending changes"), nil)
	}
	for _, o := range open {
		if o.BaseVersion == cur.Version {
			return nil, s.record(ctx, officer, action, object, errs.New(errs.ChangeAlreadyPending,
				"a change of %s (%s, by %s at %s) already awaits a second officer: approve or reject it", o.SubjectID, o.ID, o.RequestedBy,
				o.RequestedAt.Format(time.RFC3339)), nil)
		}
	}
	c := &Change{ID: newID("sch_"), SubjectID: cur.ID, BaseVersion: cur.Version, Fields: fields, Proposed: next,
		RequestedBy: officer, RequestedAt: now}
	e := s.done(officer, action, object, map[string]string{"change": c.ID, "fields": strings.Join(fields, ",")})
	if err := s.cfg.Store.CreateSubjectChange(ctx, c, e); err != nil {
		return nil, s.record(ctx, officer, action, object, errs.Wrap(errs.Unavailable, err, "recording the change"), nil)
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	c.stateAt(now)
	return c, nil
}

// Change reads a registry change and where it stands now.
func (s *Service) Change(ctx context.Context, id string) (*Change, error) {
	c, err := s.cfg.Store.GetSubjectChange(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "no registry change %s", id)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading the registry change")
	}
	c.stateAt(s.cfg.Now())
	return c, nil
}

// Changes lists registry changes, newest first: all, or only those still
// pending (undecided and unexpired).
func (s *Service) Changes(ctx context.Context, pendingOnly bool, limit int) ([]*Change, error) {
	now := s.cfg.Now()
	f := store.SubjectChangeFilter{Limit: limit}
	if pendingOnly {
		f.Undecided, f.RequestedSince = true, changeOpenSince(now)
	}
	list, err := s.cfg.Store.ListSubjectChanges(ctx, f)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading registry changes")
	}
	for _, c := range list {
		c.stateAt(now)
	}
	return list, nil
}

// DecideChange approves or rejects a pending registry change. The approver
// MUST NOT be the officer who requested it; the requester must still be an
// active officer; the subject must still be at the change's base version.
// An approval applies the change at once and returns the subject as it now
// is; a rejection returns it unchanged.
func (s *Service) DecideChange(ctx context.Context, officer, id string, approve bool, comment string) (*Change, *Subject, error) {
	act := "subject.change.reject"
	if approve {
		act = "subject.change.approve"
	}
	c, err := s.Change(ctx, id)
	if err != nil {
		return nil, nil, s.record(ctx, officer, act, "subject-change:"+id, err, nil)
	}
	object := "subject:" + c.SubjectID
	detail := map[string]string{"change": id}
	comment = strings.TrimSpace(comment)
	var cur *Subject
	switch {
	case len(comment) > 500:
		err = errs.FieldError(errs.Invalid, "comment", "at most 500 characters")
	case c.Decided:
		err = errs.New(errs.SubjectChangeNotPending, "registry change %s was already decided by %s", id, c.DecidedBy)
	case c.State == ChangeExpired:
		err = errs.New(errs.SubjectChangeNotPending, "registry change %s expired after %s; request it again", id, ChangeLifetime)
	case approve && c.RequestedBy == officer:
		err = errs.New(errs.DualControl, "the officer who requested a registry change cannot approve it; a second officer must")
	}
	if err == nil {
		cur, err = s.subject(ctx, c.SubjectID)
	}
	if err == nil && approve {
		err = s.approvable(ctx, c, cur)
	}
	if err != nil {
		return nil, nil, s.record(ctx, officer, act, object, err, detail)
	}
	now := s.cfg.Now().UTC()
	var apply *Subject
	if approve {
		next := *c.Proposed
		next.UpdatedAt = now
		apply = &next
	}
	done := map[string]string{"change": id}
	if approve {
		for k, v := range changeDetail(apply, c.Fields) {
			done[k] = v
		}
		done["requested_by"] = c.RequestedBy
	}
	e := s.done(officer, act, object, done)
	decide := func() error {
		return s.cfg.Store.DecideSubjectChange(ctx, id, approve, officer, now, comment, apply, e)
	}
	if apply != nil && cur.Kind == pki.RoleOfficer && cur.CanBeCertified(now) == nil && apply.CanBeCertified(now) != nil {
		// Two officers may end a third's licence, but not the quorum.
		d := decide
		decide = func() error { return s.cfg.Quorum.WithOfficerQuorum(ctx, cur.ID, d) }
	}
	if err := decide(); err != nil {
		switch f, dup := store.IsDuplicate(err); {
		case errs.CodeOf(err) == errs.OfficerQuorum:
		case dup && f == "change_id":
			err = errs.New(errs.SubjectChangeNotPending, "another officer decided registry change %s at the same time", id)
		case errors.Is(err, store.ErrConflict):
			err = errs.New(errs.SubjectChangeNotPending, "subject %s changed after %s was requested; request it again", c.SubjectID, id)
		case approve:
			err = duplicateSubject(err)
		default:
			err = errs.Wrap(errs.Unavailable, err, "recording the decision")
		}
		return nil, nil, s.record(ctx, officer, act, object, err, detail)
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	c.Decided, c.Approved, c.DecidedBy, c.DecidedAt, c.Comment = true, approve, officer, now, comment
	c.stateAt(now)
	if approve {
		cur = apply
	}
	return c, cur, nil
}

// approvable refuses a change that can no longer be approved.
func (s *Service) approvable(ctx context.Context, c *Change, cur *Subject) error {
	if cur.Version != c.BaseVersion {
		return errs.New(errs.SubjectChangeNotPending, "subject %s changed after %s was requested (version %d, now %d); request it again",
			c.SubjectID, c.ID, c.BaseVersion, cur.Version)
	}
	if err := ActiveOfficer(ctx, s.cfg.Store, c.RequestedBy, s.cfg.Now()); err != nil {
		var e *errs.Error
		if errors.As(err, &e) && e.Code == errs.NotAnOfficer {
			return errs.New(errs.RequesterNotActive, "%s, who requested the change, is no longer an active officer (%s); request it again", c.RequestedBy, e.Detail)
		}
		return err
	}
	return nil
}

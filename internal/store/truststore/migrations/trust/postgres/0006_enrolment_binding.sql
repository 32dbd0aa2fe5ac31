-- An enrolment is bound to what its second officer approves: the version
-- of the subject it was entered against, and the review (the identity the
-- certificate will carry as of that version, the key and the profile) with
-- its SHA-256. Once the subject changes, the enrolment can no longer be
-- approved. A request entered before this migration has version 0: it is
-- stale, and must be entered again.
ALTER TABLE enrolments ADD COLUMN subject_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enrolments ADD COLUMN review TEXT NOT NULL DEFAULT '';
ALTER TABLE enrolments ADD COLUMN review_digest TEXT NOT NULL DEFAULT '';

-- trustd schema v1: the identity registry, enrolment under dual control,
-- issued certificates and the audit trail. Tables marked append-only refuse
-- UPDATE and DELETE (SQLite has no TRUNCATE) through triggers, whatever role connects.

CREATE TABLE subjects (
  id                          TEXT PRIMARY KEY,
  kind                        TEXT NOT NULL,
  name                        TEXT NOT NULL,
  national_id                 TEXT,
  council_number              TEXT,
  profession                  TEXT,
  specialty                   TEXT,
  licence_number              TEXT,
  centre_type                 TEXT,
  province                    TEXT,
  responsible_name            TEXT,
  responsible_council_number  TEXT,
  organization                TEXT,
  dns_names                   TEXT NOT NULL DEFAULT '[]',
  licence_valid_from          TIMESTAMP NOT NULL,
  licence_valid_until         TIMESTAMP NOT NULL,
  licence_status              TEXT NOT NULL,
  created_at                  TIMESTAMP NOT NULL,
  updated_at                  TIMESTAMP NOT NULL,
  version                     INTEGER NOT NULL
);
CREATE UNIQUE INDEX subjects_council_number_uq ON subjects (council_number) WHERE kind = 'practitioner';
CREATE UNIQUE INDEX subjects_national_id_uq ON subjects (kind, national_id) WHERE national_id IS NOT NULL;
CREATE UNIQUE INDEX subjects_licence_number_uq ON subjects (kind, licence_number) WHERE licence_number IS NOT NULL;
CREATE INDEX subjects_kind_name ON subjects (kind, name);

-- Every version of every subject, with who made it.
CREATE TABLE subject_changes (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  subject_id  TEXT NOT NULL REFERENCES subjects (id),
  version     INTEGER NOT NULL,
  changed_by  TEXT NOT NULL,
  changed_at  TIMESTAMP NOT NULL,
  snapshot    TEXT NOT NULL,
  UNIQUE (subject_id, version)
);
CREATE TRIGGER subject_changes_no_update BEFORE UPDATE ON subject_changes
  BEGIN SELECT RAISE(ABORT, 'table subject_changes is append-only'); END;
CREATE TRIGGER subject_changes_no_delete BEFORE DELETE ON subject_changes
  BEGIN SELECT RAISE(ABORT, 'table subject_changes is append-only'); END;

CREATE TABLE enrolments (
  id            TEXT PRIMARY KEY,
  subject_id    TEXT NOT NULL REFERENCES subjects (id),
  profile       TEXT NOT NULL,
  csr           BLOB NOT NULL,
  key_type      TEXT NOT NULL,
  spki_sha256   TEXT NOT NULL,
  requested_by  TEXT NOT NULL,
  requested_at  TIMESTAMP NOT NULL
);
CREATE INDEX enrolments_subject ON enrolments (subject_id);
CREATE INDEX enrolments_requested_at ON enrolments (requested_at);
CREATE TRIGGER enrolments_no_update BEFORE UPDATE ON enrolments
  BEGIN SELECT RAISE(ABORT, 'table enrolments is append-only'); END;
CREATE TRIGGER enrolments_no_delete BEFORE DELETE ON enrolments
  BEGIN SELECT RAISE(ABORT, 'table enrolments is append-only'); END;

-- A public key may be enrolled once, ever.
CREATE TABLE public_keys (
  spki_sha256    TEXT PRIMARY KEY,
  first_seen_at  TIMESTAMP NOT NULL,
  source         TEXT NOT NULL
);
CREATE TRIGGER public_keys_no_update BEFORE UPDATE ON public_keys
  BEGIN SELECT RAISE(ABORT, 'table public_keys is append-only'); END;
CREATE TRIGGER public_keys_no_delete BEFORE DELETE ON public_keys
  BEGIN SELECT RAISE(ABORT, 'table public_keys is append-only'); END;

CREATE TABLE decisions (
  enrolment_id  TEXT PRIMARY KEY REFERENCES enrolments (id),
  approved      BOOLEAN NOT NULL,
  decided_by    TEXT NOT NULL,
  decided_at    TIMESTAMP NOT NULL,
  reason        TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
  BEGIN SELECT RAISE(ABORT, 'table decisions is append-only'); END;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
  BEGIN SELECT RAISE(ABORT, 'table decisions is append-only'); END;

CREATE TABLE certificates (
  serial              TEXT PRIMARY KEY,
  subject_id          TEXT NOT NULL REFERENCES subjects (id),
  profile             TEXT NOT NULL,
  enrolment_id        TEXT REFERENCES enrolments (id),
  der                 BLOB NOT NULL,
  fingerprint_sha256  TEXT NOT NULL,
  spki_sha256         TEXT NOT NULL,
  not_before          TIMESTAMP NOT NULL,
  not_after           TIMESTAMP NOT NULL,
  issued_at           TIMESTAMP NOT NULL,
  issued_by           TEXT NOT NULL
);
CREATE UNIQUE INDEX certificates_enrolment_id_uq ON certificates (enrolment_id) WHERE enrolment_id IS NOT NULL;
CREATE UNIQUE INDEX certificates_fingerprint_sha256_uq ON certificates (fingerprint_sha256);
CREATE INDEX certificates_subject ON certificates (subject_id);
CREATE TRIGGER certificates_no_update BEFORE UPDATE ON certificates
  BEGIN SELECT RAISE(ABORT, 'table certificates is append-only'); END;
CREATE TRIGGER certificates_no_delete BEFORE DELETE ON certificates
  BEGIN SELECT RAISE(ABORT, 'table certificates is append-only'); END;

CREATE TABLE audit_events (
  seq      INTEGER PRIMARY KEY AUTOINCREMENT,
  at       TIMESTAMP NOT NULL,
  actor    TEXT NOT NULL,
  action   TEXT NOT NULL,
  object   TEXT NOT NULL,
  outcome  TEXT NOT NULL,
  code     TEXT NOT NULL DEFAULT '',
  detail   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_object ON audit_events (object);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'table audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'table audit_events is append-only'); END;

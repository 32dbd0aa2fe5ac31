-- Registry changes under dual control: an update that changes a subject's
-- identity or widens its licence is requested by one officer, against the
-- version they edited, and applied only when a second approves it.
CREATE TABLE subject_change_requests (
  id            TEXT PRIMARY KEY,
  subject_id    TEXT NOT NULL REFERENCES subjects (id),
  base_version  INTEGER NOT NULL,
  fields        TEXT NOT NULL,
  proposed      TEXT NOT NULL,
  requested_by  TEXT NOT NULL,
  requested_at  TIMESTAMP NOT NULL
);
CREATE INDEX subject_change_requests_subject ON subject_change_requests (subject_id, requested_at);
CREATE INDEX subject_change_requests_requested_at ON subject_change_requests (requested_at);
CREATE TRIGGER subject_change_requests_no_update BEFORE UPDATE ON subject_change_requests
  BEGIN SELECT RAISE(ABORT, 'table subject_change_requests is append-only'); END;
CREATE TRIGGER subject_change_requests_no_delete BEFORE DELETE ON subject_change_requests
  BEGIN SELECT RAISE(ABORT, 'table subject_change_requests is append-only'); END;

CREATE TABLE subject_change_decisions (
  change_id   TEXT PRIMARY KEY REFERENCES subject_change_requests (id),
  approved    BOOLEAN NOT NULL,
  decided_by  TEXT NOT NULL,
  decided_at  TIMESTAMP NOT NULL,
  comment     TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER subject_change_decisions_no_update BEFORE UPDATE ON subject_change_decisions
  BEGIN SELECT RAISE(ABORT, 'table subject_change_decisions is append-only'); END;
CREATE TRIGGER subject_change_decisions_no_delete BEFORE DELETE ON subject_change_decisions
  BEGIN SELECT RAISE(ABORT, 'table subject_change_decisions is append-only'); END;

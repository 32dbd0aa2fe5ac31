-- The coding catalogue: dated, immutable versions of drugs and services.
-- A version and its items are written in one transaction and never change
-- afterwards (a correction is a new version), so both tables refuse UPDATE
-- and DELETE.

CREATE TABLE catalogue_versions (
  id           TEXT PRIMARY KEY,
  label        TEXT NOT NULL,
  valid_from   DATE NOT NULL,
  valid_to     DATE,
  item_count   INTEGER NOT NULL,
  imported_at  TIMESTAMP NOT NULL,
  -- Two versions starting the same day would make the one in force
  -- ambiguous.
  CONSTRAINT catalogue_versions_valid_from_uq UNIQUE (valid_from),
  CONSTRAINT catalogue_versions_dates CHECK (valid_to IS NULL OR valid_to > valid_from)
);

CREATE TABLE catalogue_items (
  version_id         TEXT NOT NULL REFERENCES catalogue_versions (id),
  code               TEXT NOT NULL,
  kind               TEXT NOT NULL CHECK (kind IN ('drug', 'lab', 'imaging', 'procedure')),
  name               TEXT NOT NULL,
  name_fa            TEXT NOT NULL,
  atc                TEXT NOT NULL,
  form               TEXT NOT NULL,
  strength           TEXT NOT NULL,
  price              INTEGER NOT NULL CHECK (price > 0),
  coverage_percent   INTEGER NOT NULL CHECK (coverage_percent BETWEEN 0 AND 100),
  prescription_only  BOOLEAN NOT NULL,
  max_quantity       INTEGER NOT NULL CHECK (max_quantity >= 0),
  professions        TEXT NOT NULL, -- JSON array of strings
  specialties        TEXT NOT NULL, -- JSON array of strings
  min_age_years      INTEGER NOT NULL,
  max_age_years      INTEGER NOT NULL,
  sex                TEXT NOT NULL CHECK (sex IN ('', 'female', 'male')),
  controlled_class   TEXT NOT NULL,
  paper_allowed      BOOLEAN NOT NULL,
  PRIMARY KEY (version_id, code)
) WITHOUT ROWID;

CREATE TRIGGER catalogue_versions_no_update BEFORE UPDATE ON catalogue_versions
  BEGIN SELECT RAISE(ABORT, 'table catalogue_versions is immutable: import a new catalogue version'); END;
CREATE TRIGGER catalogue_versions_no_delete BEFORE DELETE ON catalogue_versions
  BEGIN SELECT RAISE(ABORT, 'table catalogue_versions is immutable: import a new catalogue version'); END;
CREATE TRIGGER catalogue_items_no_update BEFORE UPDATE ON catalogue_items
  BEGIN SELECT RAISE(ABORT, 'table catalogue_items is immutable: import a new catalogue version'); END;
CREATE TRIGGER catalogue_items_no_delete BEFORE DELETE ON catalogue_items
  BEGIN SELECT RAISE(ABORT, 'table catalogue_items is immutable: import a new catalogue version'); END;

-- The insured-person registry. Each full import loads a new generation
-- table (insured_gN) and repoints the view insured_current at it in the
-- same transaction, so readers always see one consistent version and the
-- old table is dropped whole instead of deleted row by row.
CREATE TABLE registry_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT  NOT NULL
);
INSERT INTO registry_state (id, generation) VALUES (1, 0);

CREATE TABLE insured_g0 (
    national_id      TEXT NOT NULL,
    insurance_number TEXT NOT NULL,
    fund             TEXT NOT NULL,
    main_national_id TEXT,
    relation         TEXT,
    coverage_start   TEXT NOT NULL,
    coverage_end     TEXT,
    status           TEXT NOT NULL,
    birth_date       TEXT NOT NULL,
    sex              TEXT NOT NULL,
    contributions    TEXT NOT NULL,
    supp_insurer     TEXT,
    supp_plan        TEXT,
    supp_start       TEXT,
    supp_end         TEXT,
    supp_caps        TEXT
);
CREATE UNIQUE INDEX insured_g0_nid ON insured_g0 (national_id);
CREATE VIEW insured_current AS SELECT * FROM insured_g0;

CREATE TABLE registry_imports (
    id          BIGSERIAL PRIMARY KEY,
    mode        TEXT      NOT NULL CHECK (mode IN ('full', 'update')),
    generation  BIGINT    NOT NULL,
    rows        BIGINT    NOT NULL,
    main        BIGINT    NOT NULL,
    dependants  BIGINT    NOT NULL,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL
);

-- Supplementary insurance consumption: how much of each annual cap is
-- used. Survives registry re-imports; never negative.
CREATE TABLE supplementary_usage (
    national_id TEXT    NOT NULL,
    insurer     TEXT    NOT NULL,
    plan        TEXT    NOT NULL,
    year        INTEGER NOT NULL, -- Solar Hijri year
    category    TEXT    NOT NULL,
    used        BIGINT  NOT NULL CHECK (used >= 0),
    PRIMARY KEY (national_id, insurer, plan, year, category)
);

-- One row per consumption, keyed by the caller's idempotency key (e.g. a
-- dispense id and item), so that a retried dispense consumes once.
CREATE TABLE supplementary_ledger (
    key         TEXT      PRIMARY KEY,
    national_id TEXT      NOT NULL,
    insurer     TEXT      NOT NULL,
    plan        TEXT      NOT NULL,
    year        INTEGER   NOT NULL,
    category    TEXT      NOT NULL,
    requested   BIGINT    NOT NULL CHECK (requested >= 0),
    paid        BIGINT    NOT NULL CHECK (paid >= 0 AND paid <= requested),
    at          TIMESTAMP NOT NULL
);

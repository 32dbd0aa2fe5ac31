-- Each caller's lookups of a day, counted where every rxd instance over
-- this database sees them, so that N instances behind a load balancer give
-- a caller one daily budget, not N (rxapi.Limits). day is the calendar day
-- in Iran; kind the budget (lookup: eligibility and patient lookups; find:
-- prescription lookups and claims); holder a client certificate's SHA-256
-- in hex, or card:SERIAL. spent is what instances have reserved — each
-- takes a few lookups at a time when the budget is large (rxstore.Budgets)
-- — and granted what the last reservation got. Rows of past days are
-- deleted.
CREATE TABLE lookup_budgets (
    day     DATE    NOT NULL,
    kind    TEXT    NOT NULL,
    holder  TEXT    NOT NULL,
    spent   BIGINT  NOT NULL CHECK (spent > 0),
    granted BIGINT  NOT NULL CHECK (granted > 0),
    PRIMARY KEY (day, kind, holder)
);

-- Signed documents, and the answers stored with them, are mostly base64 of
-- signatures, keys and certificate chains: several KiB each, and random.
-- PostgreSQL's default storage tries to compress every value that makes a
-- row too large before it moves it out of line, and pglz gives that up on
-- nearly all of these (base64 of random bytes does not shrink by the 25 %
-- it asks): the attempt only cost, and doubled the cost of inserting a
-- prescription (docs/BENCHMARKS.md, session 7). EXTERNAL moves them out of
-- line without trying. It changes how new rows are stored, not what they
-- hold, and rows already stored stay as they are.
--
-- Each ALTER takes its table's ACCESS EXCLUSIVE lock (no rewrite, a moment)
-- and this transaction keeps it to the end, while other rxd instances
-- serve: behind a transaction that holds one of these tables for long (a
-- report, an anti-wraparound vacuum) it would wait holding the tables it
-- already has, every prescription queued behind it. It gives up instead,
-- failing this instance's start (rxd exits; it applies on a later start).
SET LOCAL lock_timeout = '2s';
ALTER TABLE prescriptions ALTER COLUMN jws SET STORAGE EXTERNAL, ALTER COLUMN answer SET STORAGE EXTERNAL;
ALTER TABLE dispenses ALTER COLUMN jws SET STORAGE EXTERNAL, ALTER COLUMN answer SET STORAGE EXTERNAL;
ALTER TABLE receipts ALTER COLUMN jws SET STORAGE EXTERNAL;
ALTER TABLE cancellations ALTER COLUMN jws SET STORAGE EXTERNAL;
ALTER TABLE settlements ALTER COLUMN answer SET STORAGE EXTERNAL;
ALTER TABLE idempotency_keys ALTER COLUMN body SET STORAGE EXTERNAL;

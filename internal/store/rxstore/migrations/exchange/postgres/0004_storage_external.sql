-- Signed documents, and the answers stored with them, are mostly base64 of
-- signatures, keys and certificate chains: several KiB each, and random.
-- PostgreSQL's default storage tries to compress every value that makes a
-- row too large before it moves it out of line, and pglz gives that up on
-- nearly all of these (base64 of random bytes does not shrink by the 25 %
-- it asks): the attempt only cost, and doubled the cost of inserting a
-- prescription (docs/BENCHMARKS.md, session 7). EXTERNAL moves them out of
-- line without trying. It changes how new rows are stored, not what they
-- hold, and rows already stored stay as they are.
ALTER TABLE prescriptions ALTER COLUMN jws SET STORAGE EXTERNAL, ALTER COLUMN answer SET STORAGE EXTERNAL;
ALTER TABLE dispenses ALTER COLUMN jws SET STORAGE EXTERNAL, ALTER COLUMN answer SET STORAGE EXTERNAL;
ALTER TABLE receipts ALTER COLUMN jws SET STORAGE EXTERNAL;
ALTER TABLE cancellations ALTER COLUMN jws SET STORAGE EXTERNAL;
ALTER TABLE settlements ALTER COLUMN answer SET STORAGE EXTERNAL;
ALTER TABLE idempotency_keys ALTER COLUMN body SET STORAGE EXTERNAL;

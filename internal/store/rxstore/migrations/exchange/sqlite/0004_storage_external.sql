-- PostgreSQL's 0004 stops it trying to compress signed documents before it
-- stores them out of line. SQLite neither compresses nor moves values out
-- of line: nothing to change.
SELECT 1;

-- PostgreSQL's TOAST threshold (postgres/0005); SQLite has no such thing.
SELECT 1;

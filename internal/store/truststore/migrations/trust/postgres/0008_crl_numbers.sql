-- CRL numbers reserved before the issuing key signs: a number is taken
-- here, durably and once, so that no two CRLs with different contents
-- are ever signed under one number (a CRL signed but not recorded, or two
-- trustd on one database). Reserved numbers may go unused.
CREATE TABLE crl_numbers (
  number       BIGINT PRIMARY KEY,
  reserved_at  TIMESTAMPTZ NOT NULL
);
CREATE TRIGGER crl_numbers_append_only BEFORE UPDATE OR DELETE ON crl_numbers
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER crl_numbers_no_truncate BEFORE TRUNCATE ON crl_numbers
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

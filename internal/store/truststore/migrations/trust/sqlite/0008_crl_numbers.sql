-- CRL numbers reserved before the issuing key signs: a number is taken
-- here, durably and once, so that no two CRLs with different contents
-- are ever signed under one number (a CRL signed but not recorded, or two
-- trustd on one database). Reserved numbers may go unused.
CREATE TABLE crl_numbers (
  number       BIGINT PRIMARY KEY,
  reserved_at  TIMESTAMP NOT NULL
);
CREATE TRIGGER crl_numbers_no_update BEFORE UPDATE ON crl_numbers
  BEGIN SELECT RAISE(ABORT, 'table crl_numbers is append-only'); END;
CREATE TRIGGER crl_numbers_no_delete BEFORE DELETE ON crl_numbers
  BEGIN SELECT RAISE(ABORT, 'table crl_numbers is append-only'); END;

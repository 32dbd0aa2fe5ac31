package rxd

import "testing"

func TestDescribePostgres(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://nuskha:s3cret@db.example:5432/rxd?sslmode=verify-full&password=s3cret", "postgres://nuskha@db.example:5432/rxd"},
		{"postgresql://db.example/rxd", "postgresql://db.example/rxd"},
		{"host=db.example dbname=rxd password=s3cret", "named in /etc/rxd/dsn"},
	} {
		if got := describePostgres(tc.dsn, "/etc/rxd/dsn"); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.dsn, got, tc.want)
		}
	}
}

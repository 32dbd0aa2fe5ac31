package insured

import "testing"

func TestContributionsRoundTrip(t *testing.T) {
	c, err := ParseContributions("۱۴۰۴-۱۲:29|1404-01:30 | 1405-01:0")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.String(); got != "1404-01:30|1404-12:29|1405-01:0" {
		t.Fatalf("String() = %q", got)
	}
	if c.PaidDays(1404*12, 1404*12+11) != 59 || c.PaidDays(1404*12+1, 1404*12+10) != 0 {
		t.Fatalf("PaidDays wrong: %v", c)
	}
	for _, bad := range []string{"1404-1:30", "1404-13:30", "1404-01:32", "1404-01:-1", "1404-01", "2025-01:30", "1404-01:30|1404-01:30", "1404-01:x"} {
		if _, err := ParseContributions(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCapsRoundTrip(t *testing.T) {
	c, err := ParseCaps("lab=200|drug=۵۰۰")
	if err != nil || c.String() != "drug=500|lab=200" {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{"drug", "drug=0", "drug=-1", "drug=1.5", "dental=5", "drug=1|drug=2", "drug=+5"} {
		if _, err := ParseCaps(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

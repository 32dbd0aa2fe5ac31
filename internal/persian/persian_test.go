package persian

import "testing"

func TestText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"arabic yeh and kaf become persian", "علي كريمي", "علی کریمی"},
		{"alef maksura", "مصطفى", "مصطفی"},
		{"zwnj kept inside a word", "می\u200cخواهم", "می\u200cخواهم"},
		{"zwnj dropped next to a space", "علی \u200cرضا\u200c", "علی رضا"},
		{"spaces collapse", "  دکتر   سارا\tاحمدی  ", "دکتر سارا احمدی"},
		{"latin untouched", "Dr. Sara Ahmadi", "Dr. Sara Ahmadi"},
		{"digits untouched", "داروخانه ۱۲", "داروخانه ۱۲"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Text(tc.in); got != tc.want {
				t.Fatalf("Text(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if Text(Text(tc.in)) != Text(tc.in) {
				t.Fatal("Text is not idempotent")
			}
		})
	}
}

func TestDigits(t *testing.T) {
	if got := Digits("۱۲۳٤٥٦abc789"); got != "123456abc789" {
		t.Fatalf("Digits = %q", got)
	}
}

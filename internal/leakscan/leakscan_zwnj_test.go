package leakscan

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
)

// TestFindsQuotedZWNJ: Persian names and drug names are often
// written with a zero-width non-joiner (deploy/sample/drugs.csv:
// "آموکسی‌سیلین", "متیل‌فنیدیت"). fold drops a raw ZWNJ, but Go's quoting
// — slog's TextHandler (trustd's default log format) and every %q in an
// error message — writes it as the six characters \u200c between raw
// Persian letters, a form neither the folded needle nor its all-escaped
// JSON form matches.
func TestFindsQuotedZWNJ(t *testing.T) {
	const drug = "آموکسی\u200cسیلین"
	n, err := Text("a drug's Persian name", drug)
	if err != nil {
		t.Fatal(err)
	}
	s := New(n)
	var text bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("refused", "item", drug)
	for name, line := range map[string]string{
		"slog TextHandler":  text.String(),
		"%q in an error":    fmt.Sprintf(`level=ERROR msg="unknown item %q"`, drug),
		"as written (sane)": "item=" + drug,
	} {
		if h := s.Scan(name, []byte(line)); h == nil {
			t.Errorf("%s: %s not found in %s", name, n.Label, line)
		}
	}
}

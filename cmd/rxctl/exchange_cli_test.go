package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// TestExchangeCommandsRefuseBadUsage: each exchange command given a
// command line it cannot run exits 2 with a usage message naming what is
// missing, and sends nothing.
func TestExchangeCommandsRefuseBadUsage(t *testing.T) {
	h := newHelpHarness(t)
	dir := t.TempDir()
	session := filepath.Join(dir, "session.json")
	if err := os.WriteFile(session, []byte(`{"token": "t"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	good := "7K3QZ-M9XW2-" + string(trackcode.CheckSymbol("7K3QZM9XW2"))
	bad := "7K3QZ-M9XW2-" + string(trackcode.CheckSymbol("7K3QZM9XW3"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"session", "open"}, "-session"},
		{[]string{"session", "open", "-session", session, "extra"}, "unexpected argument"},
		{[]string{"session", "close"}, "-session"},
		{[]string{"rx", "prescribe"}, "one of -in"},
		{[]string{"rx", "prescribe", "-in", "a.json", "-signed", "a.jws"}, "one of -in"},
		{[]string{"rx", "lookup", "-session", session, "-code", good}, "-national-id are both required"},
		{[]string{"rx", "lookup", "-session", session, "-code", bad, "-national-id", "0499370899"}, "-code"},
		{[]string{"rx", "lookup", "-code", good, "-national-id", "0499370899"}, "-session"},
		{[]string{"rx", "claim", "-session", session, "-code", good, "-national-id", "0499370899"}, "-claim-out is required"},
		{[]string{"rx", "release", "-session", session}, "-claim"},
		{[]string{"rx", "close", "-session", session}, "-claim"},
		{[]string{"rx", "dispense", "-in", "d.json"}, "give -prescription"},
		{[]string{"rx", "paper", "-in", "p.json"}, "-receipt-out is required"},
		{[]string{"rx", "history"}, "-national-id is required"},
		{[]string{"rx", "history", "-national-id", "1", "-limit", "101"}, "-limit"},
		{[]string{"rx", "access-log"}, "-national-id is required"},
		{[]string{"rx", "access-log", "-national-id", "1", "-limit", "201"}, "-limit"},
	} {
		h.forgetRequests()
		_, stderr, code := h.run(tc.args...)
		if code != exitRefused || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q; want exit 2 naming %s", tc.args, code, stderr, tc.want)
		}
		if r := h.requestsSeen(); len(r) != 0 {
			t.Errorf("%q sent %q", tc.args, r)
		}
	}
}

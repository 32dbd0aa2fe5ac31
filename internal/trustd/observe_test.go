package trustd_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/observe"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/trustdtest"
)

// TestReadinessFollowsTheToken: with the issuing key (and so the OCSP
// responder's, made in the same custody) on a SoftHSM2 token, trustd is
// ready; with the token's directory moved away it is not — /readyz 503
// naming the two key checks and only them, nuskha_hsm_token_up 0 — and
// once the token is back it is ready again, without a restart.
func TestReadinessFollowsTheToken(t *testing.T) {
	tok := softhsm.NewToken(t, "nuskha-ca")
	td := trustdtest.StartWith(t, trustdtest.Options{IntermediateKey: hsm.PKCS11URI(tok.Module, tok.Label, "issuing-ca", nil, tok.PINFile)})
	get := func(path string, status int) []byte {
		t.Helper()
		resp, err := http.Get(td.OpsURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != status {
			t.Fatalf("%s: %d %s, want %d", path, resp.StatusCode, b, status)
		}
		return b
	}
	get("/readyz", 200)

	putBack := tok.Pull(t)
	var nr observe.NotReady
	if err := json.Unmarshal(get("/readyz", 503), &nr); err != nil {
		t.Fatal(err)
	}
	for _, c := range nr.Checks {
		if wantFail := c.Name == "issuing-key" || c.Name == "ocsp-key"; c.OK == wantFail {
			t.Errorf("with the token gone, check %+v", c)
		}
	}
	if m := string(get("/metrics", 200)); !strings.Contains(m, `nuskha_hsm_token_up{key="issuing"} 0`) {
		t.Errorf("the issuing key's token is not down in:\n%s", m)
	}

	putBack()
	get("/readyz", 200)
	if m := string(get("/metrics", 200)); !strings.Contains(m, `nuskha_hsm_token_up{key="issuing"} 1`) {
		t.Errorf("the issuing key's token is not up again in:\n%s", m)
	}
}

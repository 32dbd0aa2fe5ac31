package profile_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/nuskha/nuskha/certs"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/profile"
)

func TestShippedProfilesLoad(t *testing.T) {
	s, err := profile.Load(certs.Profiles())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"exchange-receipt-signing", "officer", "ocsp-responder", "paraclinic-signing", "pharmacy-signing", "practitioner-signing", "service-tls-client", "service-tls-server", "trust-bundle-signing"}
	if got := strings.Join(s.Names(), ","); got != strings.Join(slices.Sorted(slices.Values(want)), ",") {
		t.Fatalf("profiles = %s", got)
	}
	p, _ := s.Get("practitioner-signing")
	if !p.DualControl || !p.AllowsKind(pki.RolePractitioner) || p.AllowsKind(pki.RolePharmacy) || !p.AllowsKey("RSA-2048") {
		t.Fatalf("practitioner-signing loaded as %+v", p)
	}
	if p, _ := s.Get("exchange-receipt-signing"); !p.DualControl || !p.AllowsKind(pki.RoleService) || p.AllowsKind(pki.RoleVendor) || p.AllowsKind(pki.RolePharmacy) {
		t.Fatalf("exchange-receipt-signing loaded as %+v", p)
	}
	if _, err := s.Get("nope"); !errors.Is(err, errs.Of(errs.UnknownProfile)) {
		t.Fatalf("unknown profile: %v", err)
	}
}

func TestBrokenProfilesAreRefusedAtLoad(t *testing.T) {
	const good = `{"version":1,"profiles":{"p":{"template":"p.tpl","subject_kinds":["practitioner"],"validity":"24h","key_types":["EC-P256"]}},
		"ca":{"root":{"template":"r.tpl","validity":"87600h"},"intermediate":{"template":"r.tpl","validity":"43800h"}}}`
	okTpl := `{"subject": {"commonName": {{ toJson .Identity.Name }}}, "keyUsage": ["digitalSignature"]}`
	for _, tc := range []struct {
		name, json, tpl, want string
	}{
		{"unknown field", strings.Replace(good, `"validity":"24h"`, `"validity":"24h","valdity":"1h"`, 1), okTpl, "unknown field"},
		{"unknown kind", strings.Replace(good, `["practitioner"]`, `["doctor"]`, 1), okTpl, "unknown kind"},
		{"unknown key type", strings.Replace(good, `["EC-P256"]`, `["DSA-1024"]`, 1), okTpl, "unknown key type"},
		{"bad validity", strings.Replace(good, `"24h"`, `"forever"`, 1), okTpl, "validity"},
		{"template that is not JSON", good, `{"subject": {{ .Identity.Name }}}`, "does not render"},
		{"template with a syntax error", good, `{{ if }}`, "does not render"},
		{"wrong version", strings.Replace(good, `"version":1`, `"version":2`, 1), okTpl, "version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"profiles.json": {Data: []byte(tc.json)},
				"p.tpl":         {Data: []byte(tc.tpl)},
				"r.tpl":         {Data: []byte(`{}`)},
			}
			_, err := profile.Load(fsys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

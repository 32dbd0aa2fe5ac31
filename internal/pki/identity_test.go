package pki

import (
	"encoding/asn1"
	"testing"
)

func TestIdentityRoundTrip(t *testing.T) {
	for _, id := range []Identity{
		{Role: RolePractitioner, SubjectID: "sub_1", RegistrationNumber: "MC-1", Profession: "physician", Specialty: "cardiology"},
		{Role: RolePharmacy, SubjectID: "sub_2", RegistrationNumber: "PH-9", Province: "IR-23"},
		{Role: RoleOfficer, SubjectID: "sub_3"},
	} {
		der, err := id.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseIdentity(der)
		if err != nil || got != id {
			t.Fatalf("round trip of %+v: %+v, %v", id, got, err)
		}
	}
}

func TestParseIdentityRefuses(t *testing.T) {
	good, _ := Identity{Role: RolePractitioner, SubjectID: "sub_1", RegistrationNumber: "MC-1"}.Marshal()
	v2, _ := asn1.Marshal(identityASN1{Version: 2, Role: "practitioner", SubjectID: "x"})
	noRole, _ := asn1.Marshal(identityASN1{Version: 1, SubjectID: "x"})
	for name, der := range map[string][]byte{
		"trailing data":   append(append([]byte{}, good...), 0),
		"truncated":       good[:len(good)-2],
		"unknown version": v2,
		"no role":         noRole,
		"empty":           nil,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseIdentity(der); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := (Identity{Role: RolePractitioner}).Marshal(); err == nil {
		t.Fatal("identity without subject id marshalled")
	}
}

func TestParseArc(t *testing.T) {
	for _, bad := range []string{"", "1", "1.x", "3.1", "1.40", "1.01", "-1.2"} {
		if _, err := ParseArc(bad); err == nil {
			t.Fatalf("ParseArc(%q) accepted", bad)
		}
	}
	a := MustArc("1.3.6.1.4.1.55555")
	if a.EKUPrescriptionSigning().String() != "1.3.6.1.4.1.55555.2.1" || a.IsExample() || !MustArc(DefaultArc).IsExample() {
		t.Fatal("arc layout changed")
	}
}

func FuzzParseIdentity(f *testing.F) {
	good, _ := Identity{Role: RolePractitioner, SubjectID: "sub_1", RegistrationNumber: "MC-1", Specialty: "x"}.Marshal()
	f.Add(good)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		id, err := ParseIdentity(der)
		if err != nil {
			return
		}
		// Accepted values re-encode to themselves: one meaning per encoding.
		again, err := id.Marshal()
		if err != nil {
			t.Fatalf("accepted identity does not marshal: %v", err)
		}
		id2, err := ParseIdentity(again)
		if err != nil || id2 != id {
			t.Fatalf("re-encoding changed the identity: %+v -> %+v (%v)", id, id2, err)
		}
	})
}

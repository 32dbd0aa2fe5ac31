package rules

import (
	"os"
	"strings"
	"testing"
)

func TestFieldTablesFitTheViewCache(t *testing.T) {
	for name, d := range objectDefs {
		if len(d.names) > maxFields {
			t.Errorf("%s has %d fields; view caches %d", name, len(d.names), maxFields)
		}
		if len(d.names) != len(d.fields) || len(d.names) != len(d.specs) {
			t.Errorf("%s: tables disagree", name)
		}
	}
}

// docs/rules.md is what rule authors read: it MUST list every field the
// environment exposes, and every placeholder.
func TestDocsListEveryField(t *testing.T) {
	doc, err := os.ReadFile("../../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]*objectDef{
		"patient.": patientDef, "prescriber.": prescriberDef, "prescription.": prescriptionDef,
		"item.": itemDef, "item.catalogue.": entryDef, "h.": dispensedDef,
	}
	for prefix, d := range paths {
		for _, f := range d.names {
			if !strings.Contains(string(doc), "`"+prefix+f+"`") {
				t.Errorf("docs/rules.md does not list `%s%s`", prefix, f)
			}
		}
	}
	for _, p := range PlaceholderNames() {
		if !strings.Contains(string(doc), "`{{"+p+"}}`") {
			t.Errorf("docs/rules.md does not list the placeholder `{{%s}}`", p)
		}
	}
}

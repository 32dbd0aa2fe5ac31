package api_test

import (
	"context"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/nuskha/nuskha/api"
)

// The published document must be a valid OpenAPI 3.1 document, every
// reference resolving, so that vendors' generators accept it.
func TestOpenAPIIsValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every operation refuses with the problem document.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if path == "/healthz" {
				continue
			}
			if op.Responses.Default() == nil {
				t.Errorf("%s %s has no default (problem) response", method, path)
			}
		}
	}
}

package rx

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nuskha/nuskha/internal/errs"
)

// Schemas are the JSON Schemas of version-1 documents, published for
// vendors (internal/rx/schema/*.json).
//
//go:embed schema/*.json
var Schemas embed.FS

var (
	schemaOnce sync.Once
	schemas    map[Kind]*jsonschema.Schema
	schemaErr  error
)

func compiled() (map[Kind]*jsonschema.Schema, error) {
	schemaOnce.Do(func() {
		c := jsonschema.NewCompiler()
		out := map[Kind]*jsonschema.Schema{}
		for _, k := range Kinds() {
			name := "schema/" + string(k) + "-v1.json"
			raw, err := Schemas.ReadFile(name)
			if err != nil {
				schemaErr = err
				return
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
			if err != nil {
				schemaErr = fmt.Errorf("rx: %s: %w", name, err)
				return
			}
			id := "urn:nuskha:schema:" + string(k) + "-v1"
			if err := c.AddResource(id, doc); err != nil {
				schemaErr = err
				return
			}
			if out[k], err = c.Compile(id); err != nil {
				schemaErr = fmt.Errorf("rx: compiling %s: %w", name, err)
				return
			}
		}
		schemas = out
	})
	return schemas, schemaErr
}

// validateSchema checks a payload against its kind's JSON Schema.
func validateSchema(k Kind, payload []byte) error {
	s, err := compiled()
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return errs.New(errs.InvalidDocument, "payload is not JSON")
	}
	if err := s[k].Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			field, detail := firstCause(ve)
			return errs.FieldError(errs.InvalidDocument, field, "%s", detail)
		}
		return errs.Wrap(errs.InvalidDocument, err, "schema validation failed")
	}
	return nil
}

// firstCause finds the most specific failure: the deepest first cause.
func firstCause(ve *jsonschema.ValidationError) (string, string) {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	field := strings.Join(ve.InstanceLocation, ".")
	out := ve.Error()
	if i := strings.LastIndex(out, ": "); i >= 0 {
		out = out[i+2:]
	}
	return field, out
}

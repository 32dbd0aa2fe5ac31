// Package api holds the exchange's published contract: openapi.yaml, an
// OpenAPI 3.1 document for every endpoint of rxd. It is embedded so that
// tests (and vendors' tools, through the file) check real requests and
// answers against the very document that is published.
package api

import _ "embed"

// OpenAPI is api/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

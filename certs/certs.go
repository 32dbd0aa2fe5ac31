// Package certs holds the certificate profiles: x509util templates (Go
// text/template producing JSON) and profiles.json, which says who each profile
// is for, how long its certificates live and which keys it accepts. They are
// embedded in trustd; a deployment may point trustd at its own copy.
package certs

import "embed"

// Profiles is the profiles/ directory.
//
//go:embed profiles/*.json profiles/*.tpl
var Profiles embed.FS

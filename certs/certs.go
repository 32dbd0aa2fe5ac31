// Package certs holds the certificate profiles: x509util templates (Go
// text/template producing JSON) and profiles.json, which says who each profile
// is for, how long its certificates live and which keys it accepts. They are
// embedded in trustd; a deployment may point trustd at its own copy.
package certs

import (
	"embed"
	"io/fs"
)

//go:embed profiles/*.json profiles/*.tpl
var embedded embed.FS

// Profiles returns the built-in profiles directory.
func Profiles() fs.FS {
	sub, err := fs.Sub(embedded, "profiles")
	if err != nil {
		// "profiles" is a constant, valid path inside the embedded FS.
		panic(err)
	}
	return sub
}

package hsm

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// URI is a parsed key address. Both backends use the RFC 7512 shape:
//
//	pkcs11:token=Nuskha%20CA;object=issuing-ca;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/trustd/pin
//	softkey:path=/var/lib/trustd/intermediate.key?pin-source=/var/lib/trustd/intermediate.pass
//
// Path attributes (before '?') name the key; query attributes say how to reach it.
// A PIN or password MUST NOT appear in a URI: "pin-value" is refused, because
// URIs end up in config files, process lists and logs.
type URI struct {
	Scheme string
	Path   map[string]string
	Query  map[string]string
}

// ParseURI parses a pkcs11: or softkey: URI.
func ParseURI(raw string) (*URI, error) {
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return nil, fmt.Errorf("%w: %q has no scheme", ErrBadURI, redactURI(raw))
	}
	scheme = strings.ToLower(scheme)
	if scheme != SchemePKCS11 && scheme != SchemeSoftKey {
		return nil, fmt.Errorf("%w: unsupported scheme %q (want %s: or %s:)", ErrBadURI, scheme, SchemePKCS11, SchemeSoftKey)
	}
	pathPart, queryPart, _ := strings.Cut(rest, "?")
	u := &URI{Scheme: scheme}
	var err error
	if u.Path, err = parseAttrs(pathPart, ";"); err != nil {
		return nil, err
	}
	if u.Query, err = parseAttrs(queryPart, "&"); err != nil {
		return nil, err
	}
	if _, ok := u.Query["pin-value"]; ok {
		return nil, fmt.Errorf("%w: pin-value is not accepted; use pin-source=<file> or an interactive prompt", ErrBadURI)
	}
	if _, ok := u.Path["pin-value"]; ok {
		return nil, fmt.Errorf("%w: pin-value is not accepted; use pin-source=<file> or an interactive prompt", ErrBadURI)
	}
	return u, nil
}

func parseAttrs(s, sep string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, sep) {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%w: attribute %q has no value", ErrBadURI, k)
		}
		k = strings.ToLower(k)
		dv, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: attribute %q: %v", ErrBadURI, k, err)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%w: attribute %q given twice", ErrBadURI, k)
		}
		out[k] = dv
	}
	return out, nil
}

// String renders the URI back in canonical order. Values are percent-encoded
// where RFC 7512 requires it.
func (u *URI) String() string {
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteByte(':')
	writeAttrs(&b, u.Path, ";", pathOrder)
	if len(u.Query) > 0 {
		b.WriteByte('?')
		writeAttrs(&b, u.Query, "&", queryOrder)
	}
	return b.String()
}

var (
	pathOrder  = []string{"token", "object", "id", "serial", "path"}
	queryOrder = []string{"module-path", "pin-source"}
)

func writeAttrs(b *strings.Builder, m map[string]string, sep string, order []string) {
	seen := map[string]bool{}
	first := true
	emit := func(k string) {
		if !first {
			b.WriteString(sep)
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(escapeAttr(m[k]))
		seen[k] = true
	}
	for _, k := range order {
		if _, ok := m[k]; ok {
			emit(k)
		}
	}
	// Any other attributes in a stable order.
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		emit(k)
	}
}

func escapeAttr(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// redactURI drops anything after '?' so that an error message never carries
// a query that somebody put a secret into.
func redactURI(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i] + "?…"
	}
	return raw
}

// PKCS11URI builds the URI of a key on a token, selected by token label and key
// label and/or id, the way a practitioner's IT support names it.
func PKCS11URI(modulePath, tokenLabel, keyLabel string, id []byte, pinSource string) string {
	u := &URI{Scheme: SchemePKCS11, Path: map[string]string{"token": tokenLabel}, Query: map[string]string{}}
	if keyLabel != "" {
		u.Path["object"] = keyLabel
	}
	if len(id) > 0 {
		u.Path["id"] = string(id)
	}
	if modulePath != "" {
		u.Query["module-path"] = modulePath
	}
	if pinSource != "" {
		u.Query["pin-source"] = pinSource
	}
	return u.String()
}

// SoftKeyURI builds the URI of a password-encrypted PEM key file.
func SoftKeyURI(path, passwordFile string) string {
	u := &URI{Scheme: SchemeSoftKey, Path: map[string]string{"path": path}, Query: map[string]string{}}
	if passwordFile != "" {
		u.Query["pin-source"] = passwordFile
	}
	return u.String()
}

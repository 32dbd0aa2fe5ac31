package responder

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Handler serves OCSP over HTTP at prefix (e.g. "/ocsp"): GET prefix/<base64
// request> and POST prefix with an application/ocsp-request body (RFC 6960
// appendix A). Answers that can be cached carry RFC 5019 cache headers.
func (r *Responder) Handler(prefix string) http.Handler {
	prefix = strings.TrimSuffix(prefix, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var der []byte
		switch req.Method {
		case http.MethodGet:
			raw := strings.TrimPrefix(req.URL.EscapedPath(), prefix)
			raw = strings.TrimPrefix(raw, "/")
			der = decodeGET(raw)
		case http.MethodPost:
			b, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxRequestSize+1))
			if err != nil {
				der = nil // too large or broken: answered as malformed
			} else {
				der = b
			}
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "OCSP accepts GET and POST", http.StatusMethodNotAllowed)
			return
		}
		ans := r.Respond(der)
		h := w.Header()
		h.Set("Content-Type", "application/ocsp-response")
		if ans.MaxAge > 0 && req.Method == http.MethodGet {
			sum := sha256.Sum256(ans.DER)
			h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
			h.Set("Last-Modified", ans.ThisUpdate.UTC().Format(http.TimeFormat))
			h.Set("Expires", time.Now().Add(ans.MaxAge).UTC().Format(http.TimeFormat))
			h.Set("Cache-Control", fmt.Sprintf("max-age=%d, public, no-transform, must-revalidate", int(ans.MaxAge.Seconds())))
		} else {
			h.Set("Cache-Control", "no-store")
		}
		_, _ = w.Write(ans.DER)
	})
}

// decodeGET accepts standard and URL-safe base64, percent-encoded or not,
// padded or not: clients differ.
func decodeGET(raw string) []byte {
	if u, err := url.PathUnescape(raw); err == nil {
		raw = u
	}
	raw = strings.TrimRight(raw, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(raw); err == nil {
			return b
		}
	}
	return nil
}

package problem

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/nuskha/nuskha/internal/errs"
)

// MaxBody is the default limit for request bodies (a route may set its
// own: httpedge.Routes).
const MaxBody = 64 << 10

// Decode reads one JSON value from the body into v: the content type must
// be JSON, the body at most limit bytes, and the value is read as
// Unmarshal reads it.
func Decode(r *http.Request, limit int64, v any) error {
	body, err := Body(r, limit)
	if err != nil {
		return err
	}
	return Unmarshal(body, v)
}

// Body reads a JSON request body of at most limit bytes, for callers that
// need the bytes as well as the value (then Unmarshal them).
func Body(r *http.Request, limit int64) ([]byte, error) {
	if err := CheckBody(r, "application/json"); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		// The limit may be the edge's, for the route, rather than limit.
		if mbe := new(http.MaxBytesError); errors.As(err, &mbe) {
			return nil, errs.New(errs.TooLarge, "body larger than %d bytes", mbe.Limit)
		}
		return nil, errs.New(errs.Malformed, "the body could not be read")
	}
	return body, nil
}

// CheckBody refuses a request whose body is not plainly of mediaType, or
// could be read as something else by whatever stands between the client
// and the daemon (a proxy, a filter), which reads the same bytes by the
// same headers:
//
//   - Content-Type is given at most once (net/http reads the first, others
//     the last); parsed, not matched as a prefix (application/jsonx,
//     application/json-seq and application/jose+json are other types); none
//     at all is taken as mediaType;
//   - its charset, if it names one, is UTF-8: the body is read as UTF-8
//     whatever it says (RFC 8259 §8.1), while a reader that honours
//     charset=utf-16 or iso-8859-1 reads other text from the same bytes;
//   - no Content-Encoding but identity: net/http does not decode one, so a
//     body said to be gzip was read as it came, a document other than the
//     one a decoding reader sees.
func CheckBody(r *http.Request, mediaType string) error {
	want := mediaType
	if mediaType == "application/jose" {
		want += " (a compact JWS)"
	}
	types := r.Header.Values("Content-Type")
	if len(types) > 1 {
		return errs.New(errs.Malformed, "Content-Type is given more than once; give it once, as %s", want)
	}
	if len(types) == 1 {
		mt, params, err := mime.ParseMediaType(types[0])
		if err != nil || mt != mediaType {
			return errs.New(errs.Malformed, "Content-Type must be %s", want)
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return errs.New(errs.Malformed, "the body is read as UTF-8: Content-Type may name no other charset")
		}
	}
	for _, ce := range r.Header.Values("Content-Encoding") {
		if !strings.EqualFold(strings.TrimSpace(ce), "identity") {
			return errs.New(errs.Malformed, "Content-Encoding is not accepted: send the body as it is")
		}
	}
	return nil
}

// Unmarshal reads exactly one JSON value into v, strictly: member names
// match exactly, unknown and repeated members are refused, strings are
// valid UTF-8, and nothing but white space follows the value. A refusal is
// errs.Malformed saying where (line and column, counted in characters)
// and what was expected in JSON's terms, with the member's path (items.0.quantity)
// as the field: never a Go type name, which means nothing to the sender.
func Unmarshal(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errs.New(errs.Malformed, "empty body")
	}
	if off := escapedNUL(data); off >= 0 {
		// Valid JSON, but no text anyone writes holds it, and PostgreSQL
		// cannot store it: refused here rather than failing as a 503.
		return errs.New(errs.Malformed, "%s: a string holds the NUL character (\\u0000)", at(data, int64(off)))
	}
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if err := jsonv2.UnmarshalDecode(dec, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		return describe(data, err)
	}
	end := dec.InputOffset()
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		next := int64(len(data)) - int64(len(bytes.TrimLeft(data[end:], " \t\r\n")))
		return errs.New(errs.Malformed, "%s: more data after the JSON value", at(data, next))
	}
	return nil
}

// escapedNUL is the offset of the first \u0000 escape in data (a
// backslash not itself escaped, then u0000), or -1. JSON has no other way
// to put a NUL in a string.
func escapedNUL(data []byte) int {
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte(`u0000`))
		if j < 0 {
			return -1
		}
		j += i
		n := 0
		for k := j - 1; k >= 0 && data[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return j - 1
		}
		i = j + 1
	}
}

func describe(data []byte, err error) error {
	var sem *jsonv2.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &sem):
		path := memberPath(sem.JSONPointer)
		where := at(data, sem.ByteOffset)
		switch {
		case errors.Is(sem.Err, jsonv2.ErrUnknownName):
			return errs.FieldError(errs.Malformed, path, "%s: unknown member %s", where, path)
		case path == "":
			return errs.New(errs.Malformed, "%s: the body must be %s", where, expected(sem.GoType))
		case errors.Is(sem.Err, strconv.ErrRange):
			return errs.FieldError(errs.Malformed, path, "%s: %s is out of range", where, path)
		}
		return errs.FieldError(errs.Malformed, path, "%s: %s must be %s", where, path, expected(sem.GoType))
	case errors.As(err, &syn):
		where := at(data, syn.ByteOffset)
		switch {
		case errors.Is(syn.Err, jsontext.ErrDuplicateName):
			path := memberPath(syn.JSONPointer)
			return errs.FieldError(errs.Malformed, path, "%s: member %s appears twice", where, path)
		case errors.Is(syn.Err, io.ErrUnexpectedEOF):
			return errs.New(errs.Malformed, "%s: the JSON ends before it is complete", where)
		}
		// The syntax errors speak JSON already ("invalid character ','
		// at start of value").
		return errs.New(errs.Malformed, "%s: %v", where, syn.Err)
	}
	return errs.New(errs.Malformed, "the body is not valid JSON")
}

// at names a byte offset in data as a line and column, both from 1, the
// column counting characters (names and values are often Persian).
func at(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}

// memberPath renders a JSON Pointer as dotted member names and array
// indexes: /items/0/quantity is items.0.quantity.
func memberPath(p jsontext.Pointer) string {
	var parts []string
	for tok := range p.Tokens() {
		parts = append(parts, tok)
	}
	return strings.Join(parts, ".")
}

var timeType = reflect.TypeFor[time.Time]()

// expected says in JSON's terms what a value of type t is written as.
func expected(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "another kind of value"
	}
	if t == timeType {
		return "a time in RFC 3339 form (2026-09-06T10:30:00Z)"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, not negative"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another kind of value"
}

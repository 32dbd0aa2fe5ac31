package trustapi_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// TestAccessLogEveryListener: each of the three listeners (admin, public,
// relying-party HTTP, OCSP and CRL fetches included) logs every request by
// its route, with the caller and the request id; a log captured over a
// subject's registration, lookups by its national id (in the path and in
// the query) and status fetches holds none of the id's digits, nor an OCSP
// request from a GET's path.
func TestAccessLogEveryListener(t *testing.T) {
	var logs logbuf.Buffer
	e := newEnvLogged(t, &logs)
	admin := e.admin.URL + "/admin/v1"
	var me struct {
		ID string `json:"officer_id"`
	}
	if r := e.do(e.alice, "GET", admin+"/whoami", "", nil); r.status != 200 || json.Unmarshal(r.body, &me) != nil {
		t.Fatalf("whoami: %d %s", r.status, r.body)
	}
	nid := testpki.NationalID()
	r := e.do(e.alice, "POST", admin+"/subjects", "application/json", subjectBody(nid, "MC-"+randID()))
	var sub struct {
		ID string `json:"id"`
	}
	if r.status != 201 || json.Unmarshal(r.body, &sub) != nil {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	e.do(e.alice, "GET", admin+"/subjects/"+sub.ID, "", nil)
	e.do(e.alice, "GET", admin+"/subjects?q="+nid, "", nil)
	e.do(e.alice, "POST", admin+"/subjects", "application/json", subjectBody(nid, "MC-"+randID()))
	e.do(e.alice, "GET", admin+"/subjects/"+nid, "", nil)
	e.do(e.alice, "GET", admin+"/"+nid, "", nil)

	leaf := e.credential(pki.RoleService, "service-tls-server", nil).Leaf
	serial := pki.SerialHex(leaf.SerialNumber)
	if r := e.do(e.alice, "GET", e.public.URL+"/v1/certificates/"+serial+"/status", "", nil); r.status != 200 {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	e.do(e.alice, "GET", e.public.URL+"/v1/subjects/"+nid, "", nil)

	req, err := ocsp.CreateRequest(leaf, e.pki.Intermediate, nil)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(req)
	if r := e.do(http.DefaultClient, "GET", e.rp.URL+"/ocsp/"+url.PathEscape(b64), "", nil); r.status != 200 || r.ctype != "application/ocsp-response" {
		t.Fatalf("OCSP GET: %d %s", r.status, r.ctype)
	}
	if r := e.do(http.DefaultClient, "POST", e.rp.URL+"/ocsp", "application/ocsp-request", req); r.status != 200 {
		t.Fatalf("OCSP POST: %d", r.status)
	}
	if r := e.do(http.DefaultClient, "GET", e.rp.URL+"/crl/issuing-ca-1.crl", "", nil); r.status != 200 {
		t.Fatalf("CRL: %d", r.status)
	}
	if r := e.do(http.DefaultClient, "GET", e.rp.URL+"/nothing?nid="+nid, "", nil); r.status != 404 {
		t.Fatalf("unknown path: %d", r.status)
	}

	out := logs.String()
	for _, part := range []string{nid, nid[:8], nid[2:], b64[:16]} {
		if strings.Contains(out, part) {
			t.Fatalf("the log holds %q:\n%s", part, out)
		}
	}
	type line struct {
		Listener, Method, Route, Caller, Role, Remote string
		Status                                        int
		RequestID                                     string `json:"request_id"`
	}
	var lines []line
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l line
		if bytes.Contains(sc.Bytes(), []byte(`"msg":"request"`)) && json.Unmarshal(sc.Bytes(), &l) == nil {
			if l.RequestID == "" || !strings.HasPrefix(l.Remote, "127.0.0.1:") {
				t.Errorf("an access line without a request id or remote address: %s", sc.Text())
			}
			lines = append(lines, l)
		}
	}
	for _, want := range []line{
		{Listener: "admin", Method: "GET", Route: "GET /admin/v1/whoami", Status: 200, Caller: me.ID, Role: "officer"},
		{Listener: "admin", Method: "POST", Route: "POST /admin/v1/subjects", Status: 201, Caller: me.ID, Role: "officer"},
		{Listener: "admin", Method: "GET", Route: "GET /admin/v1/subjects/{id}", Status: 200, Caller: me.ID, Role: "officer"},
		{Listener: "admin", Method: "GET", Route: "GET /admin/v1/subjects", Status: 200, Caller: me.ID, Role: "officer"},
		{Listener: "admin", Method: "POST", Route: "POST /admin/v1/subjects", Status: 409, Caller: me.ID, Role: "officer"},
		{Listener: "admin", Method: "GET", Route: "GET /admin/v1/subjects/{id}", Status: 404, Caller: me.ID, Role: "officer"},
		{Listener: "admin", Method: "GET", Route: "(no route)", Status: 404, Caller: me.ID, Role: "officer"},
		{Listener: "public", Method: "GET", Route: "GET /v1/certificates/{serial}/status", Status: 200, Caller: "anonymous"},
		{Listener: "public", Method: "GET", Route: "(no route)", Status: 404, Caller: "anonymous"},
		{Listener: "http", Method: "GET", Route: "/ocsp/", Status: 200, Caller: "anonymous"},
		{Listener: "http", Method: "POST", Route: "/ocsp", Status: 200, Caller: "anonymous"},
		{Listener: "http", Method: "GET", Route: "GET /crl/issuing-ca-1.crl", Status: 200, Caller: "anonymous"},
		{Listener: "http", Method: "GET", Route: "(no route)", Status: 404, Caller: "anonymous"},
	} {
		found := false
		for _, l := range lines {
			l.RequestID, l.Remote = "", ""
			found = found || l == want
		}
		if !found {
			t.Errorf("no access line %+v in\n%s", want, out)
		}
	}
}

// TestRequestIDInProblems: a problem from any listener carries the
// request id its access line has; a client's safe id is kept, an unsafe
// one replaced.
func TestRequestIDInProblems(t *testing.T) {
	var logs logbuf.Buffer
	e := newEnvLogged(t, &logs)
	for _, tc := range []struct {
		client *http.Client
		url    string
		status int
	}{
		{e.alice, e.admin.URL + "/admin/v1/subjects/sub_nope", 404},
		{e.alice, e.public.URL + "/v1/certificates/zz", 400},
		{http.DefaultClient, e.rp.URL + "/nothing", 404},
	} {
		for _, id := range []string{"case-2291.a", "not safe: <script>"} {
			req, _ := http.NewRequest("GET", tc.url, nil)
			req.Header.Set(problem.RequestIDHeader, id)
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var p problem.Problem
			err = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			got := resp.Header.Get(problem.RequestIDHeader)
			if err != nil || resp.StatusCode != tc.status || p.RequestID != got || got == id ||
				(resp.Header.Get(httpedge.ClientRequestIDHeader) == id) != (id == "case-2291.a") {
				t.Fatalf("%s with request id %q: %d, header %q, problem %+v", tc.url, id, resp.StatusCode, got, p)
			}
			if !strings.Contains(logs.String(), `"request_id":"`+got+`"`) {
				t.Fatalf("no log line with request id %s:\n%s", got, logs.String())
			}
		}
	}
}

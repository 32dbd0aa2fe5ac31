package archtest

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/nuskha/nuskha"

// The sides, as module-relative package paths; a path covers the packages
// below it.
var (
	trustSide = []string{
		"certs",
		"cmd/trustd",
		"internal/enrol",
		"internal/pki/ca",
		"internal/pki/ceremony",
		"internal/pki/crl",
		"internal/pki/lint",
		"internal/pki/profile",
		"internal/pki/responder",
		"internal/publish",
		"internal/registry",
		"internal/revoke",
		"internal/store/storetest",
		"internal/store/truststore",
		"internal/trustapi",
		"internal/trustd",
	}
	rxSide = []string{
		"cmd/rxd",
		"internal/adjudicate",
		"internal/catalogue",
		"internal/exchange",
		"internal/insured",
		"internal/rules",
		"internal/rxapi",
		"internal/rxd",
		"internal/store/rxstore",
	}
	// caLibraries are what only trustd's side may link from outside the
	// module: step-ca's authority and the certificate linter.
	caLibraries = []string{
		"github.com/smallstep/certificates",
		"github.com/zmap/zlint/v3",
	}
	// neitherSide are neither a side nor shared libraries: the client
	// binary (held to its own rule) and the test helpers.
	neitherSide = []string{
		"cmd/rxctl",
		"internal/archtest",
		"internal/testutil",
		"cmd/rxload",
		"internal/loadgen",
	}
)

// TestLoadToolLinksNeitherSide: the load tool is a vendor's software and
// two officers' client: it talks to trustd and rxd over their APIs and
// links neither side, nor step-ca and zlint, so that what it measures is
// what a vendor would see.
func TestLoadToolLinksNeitherSide(t *testing.T) {
	check(t, "cmd/rxload MUST NOT link trustd's side, rxd's side, step-ca or zlint",
		[]string{module + "/cmd/rxload"},
		func(p string) bool { return under(p, trustSide) || under(p, rxSide) || under(p, caLibraries) })
}

// TestExchangeAndClientLinkNoCA: the exchange and the client binary link
// nothing of trustd's side — no CA, linter, enrolment, registry,
// revocation service, publishing or trust store.
func TestExchangeAndClientLinkNoCA(t *testing.T) {
	check(t, "cmd/rxd and cmd/rxctl MUST NOT link trustd's side or step-ca and zlint",
		[]string{module + "/cmd/rxd", module + "/cmd/rxctl"},
		func(p string) bool { return under(p, trustSide) || under(p, caLibraries) })
}

// TestTrustSideLinksNoExchange: trustd's side links nothing of rxd's.
func TestTrustSideLinksNoExchange(t *testing.T) {
	var pats []string
	for _, p := range trustSide {
		pats = append(pats, "./"+p+"/...")
	}
	check(t, "trustd's side MUST NOT link rxd's side", strings.Fields(golist(t, pats...)),
		func(p string) bool { return under(p, rxSide) })
}

// TestSharedLinksNeitherSide: the shared libraries link neither side, nor
// step-ca and zlint.
func TestSharedLinksNeitherSide(t *testing.T) {
	var shared []string
	for _, p := range strings.Fields(golist(t, "./...")) {
		if !under(p, trustSide) && !under(p, rxSide) && !under(p, neitherSide) {
			shared = append(shared, p)
		}
	}
	if !slices.Contains(shared, module+"/internal/rx") || !slices.Contains(shared, module+"/internal/store/sqlstore") {
		t.Fatalf("the shared libraries were not found: %v", shared)
	}
	check(t, "a shared library MUST NOT link trustd's side, rxd's side, step-ca or zlint (a new package that belongs to a side is named in internal/archtest)", shared,
		func(p string) bool { return under(p, trustSide) || under(p, rxSide) || under(p, caLibraries) })
}

// TestResponderLinksNoService: the OCSP responder answers from the records
// it is given; it links neither the CA nor the services that decide those
// records (enrolment, revocation, publishing), whose types would bring
// them in.
func TestResponderLinksNoService(t *testing.T) {
	services := []string{"internal/pki/ca", "internal/pki/ceremony", "internal/enrol", "internal/revoke", "internal/publish", "internal/registry"}
	check(t, "internal/pki/responder MUST NOT link the CA or the services whose records it answers",
		[]string{module + "/internal/pki/responder"},
		func(p string) bool { return under(p, services) || under(p, caLibraries) })
}

// TestVendorClientImportsNoInternal: vendors import the exchange's Go
// client, and Go forbids them the module's internal packages, so the
// client (and what it links) MUST NOT import any.
func TestVendorClientImportsNoInternal(t *testing.T) {
	roots := []string{module + "/exchange/client"}
	if got := strings.TrimSpace(golist(t, "./exchange/client")); got != roots[0] {
		t.Fatalf("the vendors' client was not found: %q", got)
	}
	check(t, "the vendors' client MUST NOT import "+module+"/internal/...", roots,
		func(p string) bool { return strings.HasPrefix(p, module+"/internal/") })
}

// TestCrossings holds the chain search to a graph small enough to check by
// hand: the shortest chain to each forbidden package, ending there.
func TestCrossings(t *testing.T) {
	g := importGraph{
		"cmd/a":   {"fmt", "store"},
		"store":   {"enrol", "shared"},
		"shared":  {"enrol"},
		"enrol":   {"ca"},
		"ca":      {"authority"},
		"cmd/b":   {"shared2"},
		"shared2": {"fmt"},
	}
	forbidden := func(p string) bool { return p == "enrol" || p == "ca" || p == "authority" }
	got := g.crossings([]string{"cmd/a", "cmd/b"}, forbidden)
	if want := []string{"cmd/a → store → enrol"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, tc := range []struct {
		pkg      string
		prefixes []string
		want     bool
	}{
		{module + "/internal/pki/ca", trustSide, true},
		{module + "/internal/pki/cab", trustSide, false},
		{module + "/internal/pki", trustSide, false},
		{module + "/internal/catalogue/catalogtest", rxSide, true},
		{"github.com/smallstep/certificates/authority", caLibraries, true},
	} {
		if got := under(tc.pkg, tc.prefixes); got != tc.want {
			t.Errorf("under(%s) = %v", tc.pkg, got)
		}
	}
}

func check(t *testing.T, rule string, roots []string, forbidden func(string) bool) {
	t.Helper()
	out := golist(t, append([]string{"-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}, roots...)...)
	if c := parseGraph(out).crossings(roots, forbidden); len(c) > 0 {
		t.Errorf("%s; %d import chain(s) cross it:\n\t%s", rule, len(c), strings.Join(c, "\n\t"))
	}
}

// TestNoFileOutsideTheBuild: go list sees one build configuration (the
// default tags, CGO_ENABLED=1 as the daemons are built, this GOOS): a file
// that build constraints exclude from it is not in the graph the rules
// are checked on, and could cross the boundary unseen. The module has no
// such file; one that is added must be checked under its own
// configuration here first (go list -tags) and then allowed below.
func TestNoFileOutsideTheBuild(t *testing.T) {
	allowed := map[string]bool{} // module-relative file paths
	out := golist(t, "-f", `{{$d := .Dir}}{{range .IgnoredGoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}`, "./...")
	root := strings.TrimSpace(golist(t, "-m", "-f", "{{.Dir}}"))
	for _, f := range strings.Fields(out) {
		rel := strings.TrimPrefix(strings.TrimPrefix(f, root), "/")
		if !strings.HasSuffix(f, "_test.go") && !allowed[rel] {
			t.Errorf("%s is excluded by build constraints from the build the boundary is checked on", rel)
		}
	}
}

// golist runs go list in the module root, with cgo on as the daemons are
// built (the PKCS#11 code needs it), whatever the test runs under.
func golist(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list %v: %v\n%s", args, err, stderr)
	}
	return string(out)
}

// under reports whether pkg (a full import path) is one of prefixes or
// below one; a prefix whose first element has no dot is module-relative.
func under(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if first, _, _ := strings.Cut(p, "/"); !strings.Contains(first, ".") {
			p = module + "/" + p
		}
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// importGraph maps each package to the packages it imports.
type importGraph map[string][]string

// parseGraph reads go list -deps -f '{{.ImportPath}}{{range .Imports}}
// {{.}}{{end}}': a package a line, followed by its imports.
func parseGraph(out string) importGraph {
	g := importGraph{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	return g
}

// crossings returns, for each root, the shortest chain of imports from it
// to each forbidden package it reaches, as "a → b → c". A chain ends at
// the first forbidden package: what that one links in turn is the same
// crossing.
func (g importGraph) crossings(roots []string, forbidden func(string) bool) []string {
	var out []string
	for _, root := range roots {
		prev := map[string]string{root: ""}
		for queue := []string{root}; len(queue) > 0; queue = queue[1:] {
			for _, q := range g[queue[0]] {
				if _, seen := prev[q]; seen {
					continue
				}
				prev[q] = queue[0]
				if forbidden(q) {
					out = append(out, chainTo(prev, q))
				} else {
					queue = append(queue, q)
				}
			}
		}
	}
	return out
}

func chainTo(prev map[string]string, last string) string {
	var c []string
	for p := last; p != ""; p = prev[p] {
		c = append(c, strings.TrimPrefix(p, module+"/"))
	}
	slices.Reverse(c)
	return strings.Join(c, " → ")
}

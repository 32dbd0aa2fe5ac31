// Package archtest holds the test that keeps the trust boundary where
// docs/ARCHITECTURE.md draws it, checked on the import graph itself
// (go list -deps, without tests):
//
//   - trustd's side (the CA on step-ca and zlint, the registry, enrolment,
//     revocation, publishing, trustd's store and API) is the only code that
//     touches CA keys: the exchange (cmd/rxd) and the client (cmd/rxctl)
//     MUST NOT link any of it;
//   - rxd's side (its API, adjudication, eligibility, the catalogue, the
//     rules, rxd's store) MUST NOT be linked by trustd's side;
//   - the shared libraries (every other package under internal/, except
//     the test helpers) MUST NOT link either side: both daemons and the
//     vendors' software build on them.
//   - the load tool (cmd/rxload, internal/loadgen) MUST NOT link either
//     side: it is a vendor's software and two officers' client.
//   - the OCSP responder MUST NOT link the CA or the services whose
//     records it answers (enrolment, revocation, publishing).
//
// The graph is the one build with cgo on and the default tags; no file of
// the module may be left out of it by build constraints (one would escape
// the check). A new package is a shared library until it is named in a
// side in boundary_test.go. A failure names the chain of imports that crossed.
package archtest

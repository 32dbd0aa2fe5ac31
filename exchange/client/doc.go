// Package client is the Go client of Nuskha's prescription exchange (rxd)
// for vendors' software: prescribing systems, pharmacy systems and
// paraclinic (laboratory, imaging) systems. It speaks the published
// contract, api/openapi.yaml, and imports nothing of Nuskha's internals, so
// any vendor can import it.
//
// # Connecting
//
// Every call goes over mutual TLS with the vendor's client certificate from
// trustd (profile service-tls-client). The key may live anywhere a
// crypto.Signer can reach it — a PKCS#11 token included:
//
//	c, err := client.New(client.Config{
//		BaseURL:     "https://rxd.example.ir",
//		Certificate: tls.Certificate{Certificate: [][]byte{leaf.Raw, intermediate.Raw}, PrivateKey: signer, Leaf: leaf},
//		Roots:       roots, // trustd's root: the only trust anchor
//	})
//
// rxd speaks HTTP/1.1: one request at a time on a connection. A Client
// keeps up to 64 connections and opens each when first needed, with a TLS
// handshake and a client certificate check; Ready (GET /readyz) opens one
// ahead of the calls and says whether rxd can serve now.
//
// # Who acts
//
// The TLS certificate names the software, never the person. Documents —
// a prescription, a dispense record, a cancellation, a paper prescription —
// are signed on the actor's card and sent as compact JWS strings
// (docs/prescription-format.md); Prescribe, Dispense, Cancel and Paper take
// them as they are. Every other act (Lookup, Claim, Release, Close) needs a
// session: a session document signed on the card, posted with OpenSession.
// The Client keeps the token it answers and sends it with every later call
// (Authorization: Bearer); it works only through the TLS certificate the
// session was opened through. EndSession ends it.
//
// The session document is a JWS (typ "nuskha-session+jws", alg ES256,
// ES384 or PS256, with the card's chain in x5c, its x5t#S256, and the
// JAdES signing time sigT listed in crit) over this JSON:
//
//	{
//	  "v": 1,
//	  "type": "session",
//	  "id": "7d0c2f3e-5b1a-4c9e-8f00-2a6b1d3c4e5f",  // a fresh UUID, used once
//	  "aud": "nuskha-exchange",
//	  "issued_at": "2026-12-05T08:30:00Z",            // UTC, to the second, within 5 minutes of rxd's clock
//	  "vendor": "…43 base64url characters…"           // x5t#S256 of the vendor's TLS client certificate
//	}
//
// NewSessionDocument fills it in for the Client's certificate, and
// SignSession signs it with any crypto.Signer and its chain; vendors may
// just as well sign it with their own JOSE library.
//
// # Errors and retries
//
// Every refusal is a *Problem (RFC 9457), found with errors.As; its Code is
// stable and listed, with whether a retry can help, in docs/problems.md.
// Every operation of the contract is safe to repeat — documents are
// content-addressed (their id and the SHA-256 of their signing input), and
// the other writes carry an Idempotency-Key, drawn at random once per call
// and sent again with each of its retries — so the Client retries, up to
// Config.Retries times, when no answer came (a connection refused or cut,
// a timeout) and when rxd answers 503 or 429 with a Retry-After it may wait
// for. An answer to a document sent again says so: Replayed is true.
package client

#!/usr/bin/env bash
# The README's enrolment walkthrough, runnable: a throwaway trustd (its own
# directory and ports), a SoftHSM2 token standing in for a practitioner's
# smart card, officer Alice entering, Bob approving, the certificate written
# back to the card and checked with OpenSSL. deploy/test.sh runs it, so the
# README stays true.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p bin
go build -o bin/trustd ./cmd/trustd
go build -o bin/rxctl ./cmd/rxctl

step() { printf '\n==> %s\n' "$*"; }
json_id() { sed -n 's/^  "id": "\([^"]*\)".*/\1/p' | head -1; }
base=$((20000 + RANDOM % 20000))
ADMIN=127.0.0.1:$base PUBLIC=127.0.0.1:$((base + 1)) HTTP=127.0.0.1:$((base + 2))

step "CA ceremony"
bin/trustd init -dir "$work/trustd" -officer alice -officer bob \
  -admin-listen "$ADMIN" -public-listen "$PUBLIC" -http-listen "$HTTP" >/dev/null 2>&1
bin/trustd serve -config "$work/trustd/trustd.json" 2>"$work/trustd.log" &
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/${PUBLIC%:*}/${PUBLIC#*:}") 2>/dev/null && break; sleep 0.1; done

export NUSKHA_CA_FILE=$work/trustd/ca/root.crt NUSKHA_ADMIN_URL=https://$ADMIN NUSKHA_PUBLIC_URL=https://$PUBLIC
alice=(-cert "$work/trustd/officers/alice.crt" -key "softkey:path=$work/trustd/officers/alice.key?pin-source=$work/trustd/officers/alice.pass")
bob=(-cert "$work/trustd/officers/bob.crt" -key "softkey:path=$work/trustd/officers/bob.key?pin-source=$work/trustd/officers/bob.pass")

step "a SoftHSM2 token stands in for Dr Ahmadi's smart card"
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" >"$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label dr-card --pin 123456 --so-pin 654321 >/dev/null
echo 123456 >"$work/pin.txt"
card=(-module "$(ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so 2>/dev/null | head -1)" -token dr-card -key-label rx-signing -key-id 01 -pin-file "$work/pin.txt")

step "IT support: key and CSR on the card"
bin/rxctl token keygen "${card[@]}"
bin/rxctl token csr "${card[@]}" -out "$work/req.csr"

step "Officer Alice registers the practitioner and enters the request"
subject=$(bin/rxctl subject add "${alice[@]}" -file - <<'JSON' | json_id
{"kind": "practitioner", "name": "دکتر سارا احمدی", "national_id": "0499370899",
 "council_number": "MC-90210", "profession": "physician", "specialty": "cardiology",
 "licence_valid_from": "2024-03-20", "licence_valid_until": "2030-03-20"}
JSON
)
enrolment=$(bin/rxctl enrol request "${alice[@]}" -subject "$subject" -profile practitioner-signing -csr "$work/req.csr" | json_id)
echo "subject $subject, enrolment $enrolment"

step "Alice cannot approve her own request"
if bin/rxctl enrol approve "${alice[@]}" "$enrolment" 2>"$work/err"; then echo "self-approval accepted!" >&2; exit 1; fi
grep -q dual-control-violation "$work/err" && cat "$work/err"

step "Bob approves"
bin/rxctl enrol approve "${bob[@]}" "$enrolment" >/dev/null

step "IT support fetches the certificate and writes it to the card"
bin/rxctl cert fetch -enrolment "$enrolment" -out "$work/chain.pem" >/dev/null
bin/rxctl token import-cert "${card[@]}" -cert "$work/chain.pem"
bin/rxctl token show "${card[@]}"

step "OpenSSL agrees"
awk '/BEGIN/{n++} n==1' "$work/chain.pem" >"$work/leaf.pem"
awk '/BEGIN/{n++} n==2' "$work/chain.pem" >"$work/int.pem"
openssl verify -x509_strict -CAfile "$work/trustd/ca/root.crt" -untrusted "$work/int.pem" "$work/leaf.pem"
echo "demo complete"

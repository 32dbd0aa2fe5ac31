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
bash deploy/build.sh

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

step "rxd: the officers certify rxd's server key and a vendor's client key"
enrol_service() { # name kind profile key.pem
  openssl req -new -key "$4" -subj "/CN=$1" -out "$work/$1.csr"
  local s e
  s=$(bin/rxctl subject add "${alice[@]}" -file - <<JSON | json_id
{"kind": "$2", "name": "$1", "organization": "Example Health Software", "dns_names": ["localhost"],
 "licence_valid_from": "2024-03-20", "licence_valid_until": "2030-03-20"}
JSON
)
  e=$(bin/rxctl enrol request "${alice[@]}" -subject "$s" -profile "$3" -csr "$work/$1.csr" | json_id)
  bin/rxctl enrol approve "${bob[@]}" -out "$work/$1-chain.pem" "$e" >/dev/null
}
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/rxd.key" 2>/dev/null
enrol_service rxd service service-tls-server "$work/rxd.key"
echo 'vendor key passphrase' >"$work/vendor.pass"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null |
  openssl pkcs8 -topk8 -v2 aes-256-cbc -passout "file:$work/vendor.pass" -out "$work/vendor.key"
openssl pkey -in "$work/vendor.key" -passin "file:$work/vendor.pass" -out "$work/vendor-plain.key"
enrol_service his-connector vendor service-tls-client "$work/vendor-plain.key"
rm "$work/vendor-plain.key"

step "rxd: the insured-person registry and the catalogue"
contributions=$(for y in $(seq 1400 1420); do for m in $(seq -w 1 12); do printf '%s-%s:30|' "$y" "$m"; done; done)
cat >"$work/registry.csv" <<CSV
national_id,insurance_number,fund,main_national_id,relation,coverage_start,coverage_end,status,birth_date,sex,contributions,supp_insurer,supp_plan,supp_start,supp_end,supp_caps
۰۰۱۰۳۵۰۸۲۹,INS-1,salaried,,,1395-01-01,,active,1360-05-12,female,${contributions%|},دی,gold,1400-01-01,,drug=50000000|lab=20000000
0499370899,INS-2,salaried,0010350829,child,1398-01-01,,active,1398-02-03,male,,,,,,
CSV
cat >"$work/drugs.csv" <<'CSV'
code,name,name_fa,atc,form,strength,price,coverage_percent,prescription_only,max_quantity,professions,specialties,min_age_years,max_age_years,sex,controlled_class,paper_allowed
1000210,Amoxicillin,آموکسی‌سیلین,J01CA04,capsule,500 mg,32000,70,true,30,physician|dentist|midwife,,0,0,,,true
1000630,Methylphenidate,متیل‌فنیدیت,N06BA04,tablet,10 mg,52000,70,true,60,physician,psychiatry|neurology|pediatrics,6,0,,psychotropic,false
CSV
bin/rxd import-registry -db "$work/rxd.db" -create -mode full -quiet "$work/registry.csv"
bin/rxd import-catalogue -db "$work/rxd.db" -label "demo" -valid-from 1400-01-01 -drugs "$work/drugs.csv"
bin/rxd check-rules internal/rules/starter/rules.yaml

step "rxd serves; the vendor's software asks it"
RXD=localhost:$((base + 3))
bin/rxd serve -db "$work/rxd.db" -listen "$RXD" -tls-cert "$work/rxd-chain.pem" -tls-key "$work/rxd.key" \
  -client-ca "$work/trustd/ca/root.crt" 2>"$work/rxd.log" &
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${RXD#*:}") 2>/dev/null && break; sleep 0.1; done
export NUSKHA_RXD_URL=https://$RXD NUSKHA_CLIENT_CERT=$work/his-connector-chain.pem
export NUSKHA_CLIENT_KEY="softkey:path=$work/vendor.key?pin-source=$work/vendor.pass"
bin/rxctl eligibility check 0499370899 | tee "$work/elig.json"
grep -q '"eligible": true' "$work/elig.json"
cat >"$work/check.json" <<JSON
{"scope": "prescribe", "prescription": {"v": 1, "type": "prescription", "id": "0b6f3f1e-8f0a-4c1e-9d2a-5b7c9e1f2a3b",
 "issued_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "patient": {"national_id": "0010350829", "name": "مریم کریمی", "birth_date": "1981-08-03", "sex": "female"},
 "prescriber": {"council_number": "MC-90210", "profession": "physician", "specialty": "general"}, "practice": {"name": "مطب"},
 "items": [{"kind": "drug", "code": "1000210", "quantity": 20}, {"kind": "drug", "code": "1000630", "quantity": 30}]}}
JSON
# Amoxicillin covered (70 % of 640 000, the rest by supplementary
# insurance); methylphenidate needs a specialist, so not everything is
# allowed: rxctl prints the answer and exits 3.
status=0
bin/rxctl rules check "$work/check.json" >"$work/decision.json" || status=$?
cat "$work/decision.json"
[ "$status" -eq 3 ]
grep -q '"insurer_pays": 448000' "$work/decision.json"
grep -q '"rule": "controlled-needs-specialist"' "$work/decision.json"
echo "demo complete"

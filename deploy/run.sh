#!/usr/bin/env bash
# Runs Nuskha on the embedded default: SQLite and password-encrypted key
# files, no external server. trustd (the CA, registry and revocation) and
# rxd (the prescription exchange, eligibility, catalogue, rules service) run
# side by side.
#
# The first run performs the CA ceremony into var/trustd with two officers,
# alice and bob; then the officers certify rxd's server key, the exchange's
# receipt-signing key and a demo vendor's client key, and rxd loads the
# sample registry and catalogue in deploy/sample. Later runs reuse all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
STATE=$(abs "${NUSKHA_STATE:-var/trustd}")
RXD_STATE=$(abs "${NUSKHA_RXD_STATE:-var/rxd}")
# Listeners (used on the first run, when the CA is made): the README's
# defaults, or others when these are taken.
ADMIN_LISTEN=${NUSKHA_ADMIN_LISTEN:-127.0.0.1:8443}
PUBLIC_LISTEN=${NUSKHA_PUBLIC_LISTEN:-127.0.0.1:8444}
HTTP_LISTEN=${NUSKHA_HTTP_LISTEN:-127.0.0.1:8080}
RXD_LISTEN=${NUSKHA_RXD_LISTEN:-127.0.0.1:8543}
export CGO_ENABLED=1
say() { printf '==> %s\n' "$*"; }
# wait_for NAME PID HOST:PORT: until the daemon answers TLS there; if it
# stops or does not answer within 30 s, say so (its own messages are above)
# and stop. A whole handshake, so that the daemon has nothing to complain of.
wait_for() {
  for _ in $(seq 1 300); do
    openssl s_client -connect "$3" </dev/null >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "$1 stopped: see its messages above" >&2; exit 1; }
    sleep 0.1
  done
  echo "$1 is not listening on $3 after 30 s: see its messages above" >&2
  exit 1
}

say "building trustd, rxd and rxctl into bin/ (the first build takes a few minutes)"
bash deploy/build.sh
# From here on everything made is state: keys, passwords, the registry with
# national ids, the insured registry. It is the owner's alone.
umask 077
mkdir -p "$STATE" "$RXD_STATE"
chmod 700 "$STATE" "$RXD_STATE"
# rxd's audit log (docs/audit-log.md): its pseudonym key and the key its
# checkpoint key is sealed under, here encrypted key files like every key
# of make run (in production, keys on the HSM token), and the sealed
# checkpoint key. Made once and kept: a new pseudonym key would cut every
# patient's record in two. Made before the CA ceremony, so that trustd's
# trust bundle names rxd's log too (audit_log.other_logs): an auditor
# holding the bundle has both logs' keys.
AUDIT=$RXD_STATE/audit
audit_flags=(-audit-pseudonym-key "softkey:path=$AUDIT/pseudonym.key?pin-source=$AUDIT/keys.pass"
  -audit-seal-key "softkey:path=$AUDIT/seal.key?pin-source=$AUDIT/keys.pass"
  -audit-note-key "$AUDIT/note.key" -audit-origin "${NUSKHA_RXD_AUDIT_ORIGIN:-localhost/rxd-audit}")
if [ ! -f "$AUDIT/note.key" ]; then
  say "rxd's audit log keys; the checkpoint verifier key is in $AUDIT/note.vkey"
  mkdir -p "$AUDIT" && chmod 700 "$AUDIT"
  [ -f "$AUDIT/keys.pass" ] || head -c 24 /dev/urandom | base64 >"$AUDIT/keys.pass"
  bin/rxd audit-keys "${audit_flags[@]}" >"$AUDIT/note.vkey"
fi
RXD_AUDIT_URL=https://localhost:${RXD_LISTEN##*:}/audit
first=
if [ ! -f "$STATE/trustd.json" ]; then
  say "CA ceremony: root and issuing CA, officers alice and bob, into $STATE"
  bin/trustd init -dir "$STATE" -officer alice -officer bob \
    -admin-listen "$ADMIN_LISTEN" -public-listen "$PUBLIC_LISTEN" -http-listen "$HTTP_LISTEN" \
    -other-log "${NUSKHA_RXD_AUDIT_ORIGIN:-localhost/rxd-audit} $(cat "$AUDIT/note.vkey") $RXD_AUDIT_URL"
  first=1
fi

trap 'kill $(jobs -p) 2>/dev/null || true' EXIT INT TERM
public=$(sed -n '/"public"/,/}/s/.*"listen": *"\([^"]*\)".*/\1/p' "$STATE/trustd.json" | head -1)
say "starting trustd (public API $public)"
bin/trustd serve -config "$STATE/trustd.json" &
wait_for trustd $! "$public"

export NUSKHA_CA_FILE=$STATE/ca/root.crt
export NUSKHA_PUBLIC_URL=https://$public
export NUSKHA_ADMIN_URL=https://$(sed -n '/"admin"/,/}/s/.*"listen": *"\([^"]*\)".*/\1/p' "$STATE/trustd.json" | head -1)
# The officers' keys are in their hand-over directories: on a real CA they
# would be on their own tokens, not on this host.
officer() { local h=$STATE/handover/$1; echo -cert "$h/$1.crt" -key "softkey:path=$h/$1.key?pin-source=$h/$1.pass"; }

# certify NAME KIND PROFILE: an encrypted key file for NAME, registered as a
# vendor or service, its enrolment entered by alice and approved by bob.
certify() {
  local dir=$RXD_STATE/$1 s e
  mkdir -p "$dir" && chmod 700 "$dir"
  head -c 24 /dev/urandom | base64 >"$dir/key.pass"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null |
    openssl pkcs8 -topk8 -v2 aes-256-cbc -passout "file:$dir/key.pass" -out "$dir/key.pem"
  openssl req -new -key "$dir/key.pem" -passin "file:$dir/key.pass" -subj "/CN=$1" -out "$dir/req.csr"
  s=$(bin/rxctl subject add $(officer alice) -q -file - <<JSON
{"kind": "$2", "name": "$1", "organization": "Nuskha demo", "dns_names": ["localhost"],
 "licence_valid_from": "2024-03-20", "licence_valid_until": "2030-03-20"}
JSON
)
  e=$(bin/rxctl enrol request $(officer alice) -q -subject "$s" -profile "$3" -csr "$dir/req.csr")
  bin/rxctl enrol approve $(officer bob) -out "$dir/chain.pem" "$e" >/dev/null
}
if [ ! -f "$RXD_STATE/rxd/chain.pem" ]; then
  say "officers alice and bob certify rxd's server key and a demo vendor's client key"
  certify rxd service service-tls-server
  certify demo-vendor vendor service-tls-client
fi
if [ ! -f "$RXD_STATE/rxd-exchange/chain.pem" ]; then
  # The key rxd signs acknowledgements and receipts with: here an encrypted
  # key file like every key of make run, in production a key in an HSM.
  say "officers alice and bob certify the exchange's receipt-signing key"
  certify rxd-exchange service exchange-receipt-signing
fi
if [ ! -f "$RXD_STATE/auditor/chain.pem" ]; then
  # A service of the insurer's own (a service's client certificate): rxd
  # shows patients' histories, access logs and its audit log to no one else.
  say "officers alice and bob certify the insurer's auditing service's client key"
  certify auditor service service-tls-client
fi
if [ ! -f "$RXD_STATE/rxd.db" ]; then
  say "rxd loads the sample registry and catalogue from deploy/sample"
  bin/rxd import-registry -db "$RXD_STATE/rxd.db" -create -mode full -quiet deploy/sample/registry.csv
  bin/rxd import-catalogue -db "$RXD_STATE/rxd.db" -label sample -valid-from 1400-01-01 \
    -drugs deploy/sample/drugs.csv -services deploy/sample/services.csv
fi
say "starting rxd with the prescription exchange (on $RXD_LISTEN)"
# -revocation-recheck 0: rxd asks trustd's OCSP responder on every call
# rather than reusing a "good" answer for up to a minute, so that the
# walkthrough's revoked card is refused at once (a production rxd keeps the
# default bound, docs/rxd.md).
bin/rxd serve -db "$RXD_STATE/rxd.db" -listen "$RXD_LISTEN" -tls-cert "$RXD_STATE/rxd/chain.pem" \
  -tls-key "softkey:path=$RXD_STATE/rxd/key.pem?pin-source=$RXD_STATE/rxd/key.pass" \
  -client-ca "$STATE/ca/root.crt" "${audit_flags[@]}" \
  -exchange-key "softkey:path=$RXD_STATE/rxd-exchange/key.pem?pin-source=$RXD_STATE/rxd-exchange/key.pass" \
  -exchange-cert "$RXD_STATE/rxd-exchange/chain.pem" -revocation-recheck 0 &
wait_for rxd $! "$RXD_LISTEN"

# No national id in this message: make run's output is the daemons' log,
# which deploy/demo.sh scans for the registry's ids.
cat <<MSG

trustd and rxd are running (Ctrl-C stops both).${first:+ First run: the CA, officers alice and bob, rxd's certificates and a demo vendor's were made.}

As officer alice:
  export NUSKHA_CA_FILE=$STATE/ca/root.crt NUSKHA_ADMIN_URL=$NUSKHA_ADMIN_URL NUSKHA_PUBLIC_URL=$NUSKHA_PUBLIC_URL
  export NUSKHA_OFFICER_CERT=$STATE/handover/alice/alice.crt
  export NUSKHA_OFFICER_KEY='softkey:path=$STATE/handover/alice/alice.key?pin-source=$STATE/handover/alice/alice.pass'
  bin/rxctl subject list

As the demo vendor's software, against rxd:
  export NUSKHA_CA_FILE=$STATE/ca/root.crt NUSKHA_RXD_URL=https://localhost:${RXD_LISTEN#*:}
  export NUSKHA_CLIENT_CERT=$RXD_STATE/demo-vendor/chain.pem
  export NUSKHA_CLIENT_KEY='softkey:path=$RXD_STATE/demo-vendor/key.pem?pin-source=$RXD_STATE/demo-vendor/key.pass'
  bin/rxctl eligibility check NATIONAL-ID    (one of deploy/sample/registry.csv's)
  bin/rxctl rules check deploy/sample/check.json
  bin/rxctl catalogue search آموکسی

As the insurer's auditing service (patients' histories and access logs, rxd's audit log):
  bin/rxctl rx access-log -cert $RXD_STATE/auditor/chain.pem -key 'softkey:path=$RXD_STATE/auditor/key.pem?pin-source=$RXD_STATE/auditor/key.pass' -national-id NATIONAL-ID

(README.md walks through every role from here, the prescription exchange
included; docs/exchange.md and docs/rxd.md through rxd. rxd
runs the starter rule set; "bin/rxd serve -rules FILE" runs yours and
reloads it when it changes.)
MSG
wait -n

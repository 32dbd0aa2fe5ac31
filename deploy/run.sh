#!/usr/bin/env bash
# Runs trustd on the embedded default: SQLite and password-encrypted key
# files, no external server. The first run performs the CA ceremony into
# var/trustd with two officers, alice and bob.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${NUSKHA_STATE:-var/trustd}
export CGO_ENABLED=1
mkdir -p bin
go build -o bin/trustd ./cmd/trustd
go build -o bin/rxctl ./cmd/rxctl
if [ ! -f "$STATE/trustd.json" ]; then
  bin/trustd init -dir "$STATE" -officer alice -officer bob
  cat <<MSG

To act as officer alice from another terminal:
  export NUSKHA_CA_FILE=$PWD/$STATE/ca/root.crt
  export NUSKHA_OFFICER_CERT=$PWD/$STATE/officers/alice.crt
  export NUSKHA_OFFICER_KEY='softkey:path=$PWD/$STATE/officers/alice.key?pin-source=$PWD/$STATE/officers/alice.pass'
  bin/rxctl subject list
(See README.md for a whole enrolment.)

MSG
fi
exec bin/trustd serve -config "$STATE/trustd.json"

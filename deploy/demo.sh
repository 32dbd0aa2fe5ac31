#!/usr/bin/env bash
# Runs README.md as a new user would: every ```sh block, verbatim and in
# order, in a fresh copy of the repository. deploy/test.sh runs it, so the
# README cannot drift from the code.
#
# The one liberty taken is with the set-up block, which must hold exactly
# the README's two set-up commands: `make run` is started in the background
# (the README's "second terminal" is this script), on free ports when the
# usual ones are taken, and `make test` is not run again, because it is what
# runs this script. Every other block runs with `set -euo pipefail`, so a
# command that fails, or an unset variable, fails the walkthrough.
#
# A block may be followed by <!-- expect: TEXT --> lines (invisible on the
# rendered page): the block's output must contain each TEXT.
#
# Then it scans the audit tables, the audit logs' and access log's answers
# and make run's output (the daemons' logs) for the walkthrough's national
# ids, names and prescription contents (internal/leakscan/demoscan).
set -euo pipefail
cd "$(dirname "$0")/.."
readme=$PWD/README.md
log() { printf '==> %s\n' "$*" >&2; }

work=$(mktemp -d)
runner=
cleanup() {
  if [ -n "$runner" ]; then kill -- "-$runner" 2>/dev/null || true; wait "$runner" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A fresh copy: what git tracks (with its working-tree contents) and new
# files not ignored; never var/ or bin/ from an earlier `make run`.
mkdir "$work/repo"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && cp --parents -P "$f" "$work/repo/"
done
cd "$work/repo"

# Blocks, numbered from 1, each in its own file; expectations beside them.
awk -v dir="$work" '
  /^```sh[[:space:]]*$/ { n++; inblock = 1; file = dir "/block" n ".sh"; printf "" > file; next }
  inblock && /^```[[:space:]]*$/ { inblock = 0; last = n; next }
  inblock { print > file; next }
  /^<!-- expect: .* -->[[:space:]]*$/ && last {
    sub(/^<!-- expect: /, ""); sub(/ -->[[:space:]]*$/, "")
    print > (dir "/expect" last ".txt"); next
  }
  /[^[:space:]]/ { last = 0 }
  END { print n > (dir "/count") }
' "$readme"
count=$(cat "$work/count")
[ "$count" -ge 2 ] || { echo "README.md has $count sh blocks; expected the set-up block and a walkthrough" >&2; exit 1; }

# The set-up block: exactly `make run` and `make test`, comments aside.
setup=$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$work/block1.sh")
if [ "$setup" != $'make run\nmake test' ]; then
  echo "README.md's first sh block must be the two set-up commands, make run and make test; it is:" >&2
  cat "$work/block1.sh" >&2
  exit 1
fi

taken=" "
free_port() { # the usual port if nothing listens on it, else a free one
  local p=$1
  while [[ $taken == *" $p "* ]] || (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
    p=$((20000 + RANDOM % 30000))
  done
  taken="$taken$p "
  echo "$p"
}
# (not in $(…), whose subshell would forget what free_port has handed out)
for name in ADMIN:8443 PUBLIC:8444 HTTP:8080 RXD:8543; do
  free_port "${name#*:}" >"$work/port"
  printf -v "NUSKHA_${name%%:*}_LISTEN" '127.0.0.1:%s' "$(cat "$work/port")"
done
export NUSKHA_ADMIN_LISTEN NUSKHA_PUBLIC_LISTEN NUSKHA_HTTP_LISTEN NUSKHA_RXD_LISTEN
# rxctl's defaults are the usual ports; point it at the ones in use.
export NUSKHA_ADMIN_URL=https://$NUSKHA_ADMIN_LISTEN NUSKHA_PUBLIC_URL=https://$NUSKHA_PUBLIC_LISTEN
export NUSKHA_RXD_URL=https://localhost:${NUSKHA_RXD_LISTEN#*:}

log "README block 1: make run (in the background; make test is what runs this)"
mkfifo "$work/run.out"
# Held open read-write here, so make run never meets a closed pipe.
exec 3<>"$work/run.out"
setsid make run >&3 2>&1 &
runner=$!
deadline=$((SECONDS + 1200)) # a cold first build on two cores takes minutes
ready=
while [ -z "$ready" ]; do
  if IFS= read -r -t 5 line <&3; then
    printf '    | %s\n' "$line" >&2
    printf '%s\n' "$line" >>"$work/run.log"
    case $line in *"are running"*) ready=1 ;; esac
  else
    kill -0 "$runner" 2>/dev/null || { echo "make run ended before trustd and rxd were running" >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "make run did not get trustd and rxd running in 20 minutes" >&2; exit 1; }
  fi
done
# keep draining make run's output so it never blocks on a full pipe; all
# of it is in run.log, which the scan below reads
cat <&3 >>"$work/run.log" &
drain=$!

# One shell for all the walkthrough's blocks, as in the user's second
# terminal: what one block sets, the next one uses.
script=$work/walkthrough.sh
for i in $(seq 2 "$count"); do
  printf 'printf "\\n::README block %d::\\n"\n' "$i"
  cat "$work/block$i.sh"
  printf '\n'
done >"$script"
out=$work/walkthrough.out
log "README blocks 2-$count"
rc=0
bash -euo pipefail "$script" 2>&1 | tee "$out" | sed 's/^/    | /' >&2 || rc=$?
if [ "$rc" -ne 0 ]; then
  failed=$(sed -n 's/^::README block \([0-9]*\)::$/\1/p' "$out" | tail -1)
  echo "README block ${failed:-?} failed (exit $rc); it reads:" >&2
  sed 's/^/    > /' "$work/block${failed:-2}.sh" >&2
  exit 1
fi
for i in $(seq 2 "$count"); do
  [ -f "$work/expect$i.txt" ] || continue
  awk -v b="::README block $i::" '$0 == b {on = 1; next} /^::README block [0-9]+::$/ {on = 0} on' "$out" >"$work/out$i.txt"
  while IFS= read -r want; do
    grep -qF -- "$want" "$work/out$i.txt" || { echo "README block $i: its output lacks \"$want\"" >&2; exit 1; }
  done <"$work/expect$i.txt"
done
log "README walkthrough complete: blocks 2-$count ran verbatim"

# Issue 13: no national id, digits of one, or payload text anywhere in the
# audit tables, the audit logs' HTTP answers or the daemons' logs. After the
# walkthrough: every row of both daemons' audit tables, both logs' tiles and
# entry bundles as an auditor fetches them, the patients' access log, and
# everything make run and the daemons wrote (internal/leakscan/demoscan).
log "scanning the audit tables, audit logs, access log and daemons' logs for the walkthrough's national ids, names and prescription contents"
auditor=$PWD/var/rxd/auditor
CGO_ENABLED=1 go run ./internal/leakscan/demoscan -repo . \
  -db trustd=var/trustd/trustd.db -db rxd=var/rxd/rxd.db \
  -audit "$NUSKHA_PUBLIC_URL/audit" -audit "http://$NUSKHA_HTTP_LISTEN/audit" -audit "$NUSKHA_RXD_URL/audit" \
  -rxd "$NUSKHA_RXD_URL" -ca-file var/trustd/ca/root.crt \
  -cert "$auditor/chain.pem" -key "softkey:path=$auditor/key.pem?pin-source=$auditor/key.pass" \
  -log "$work/run.log" || {
  echo "the scan found a national id, a name or prescription contents where none may be, or could not read what it scans (above)" >&2
  exit 1
}
# What the daemons logged in answer to the scan's own requests may still
# have been on its way to run.log: stop them, let everything they wrote
# reach run.log (a marker written after it arrives last: the pipe keeps
# order), and scan the log again.
kill -- "-$runner" 2>/dev/null || true
wait "$runner" 2>/dev/null || true
for _ in $(seq 1 300); do # the daemons too, which log as they stop
  kill -0 -- "-$runner" 2>/dev/null || break
  sleep 0.1
done
runner=
echo "::demo.sh: make run stopped::" >&3
for _ in $(seq 1 300); do
  grep -qF "::demo.sh: make run stopped::" "$work/run.log" && break
  sleep 0.1
done
grep -qF "::demo.sh: make run stopped::" "$work/run.log" || { echo "make run's output did not reach run.log" >&2; exit 1; }
kill "$drain" 2>/dev/null || true
CGO_ENABLED=1 go run ./internal/leakscan/demoscan -repo . -log "$work/run.log" || {
  echo "the daemons' logs hold a national id, a name or prescription contents (above)" >&2
  exit 1
}
log "no national id, name or prescription contents in the audit tables, audit logs, access log or logs"

#!/usr/bin/env bash
# The exchange's end-to-end benchmark (docs/BENCHMARKS.md): a throwaway
# trustd (the ceremony, keys in encrypted files) certifies, through its
# admin API, the keys rxload setup makes; rxd serves the exchange on
# PostgreSQL (a schema of its own in $NUSKHA_TEST_POSTGRES, which must
# have synchronous_commit and fsync on); rxload submits prescriptions
# over HTTPS and claims, dispenses and closes them, then offers 1,000
# prescriptions a second open loop. Everything shares this machine's cores.
#
#   NUSKHA_TEST_POSTGRES=postgres://… bash deploy/loadbench.sh [N] [CLIENTS]
#   (RATE_N=… prescriptions offered at 1000/s after; WARM=… prescriptions
#   submitted first and not measured; RATES="600 800 …" offers RATE_N at
#   each rate in turn instead of 1000/s, from RATE_C clients [256];
#   RXD_FLAGS="…" are more flags for rxd serve; DISPENSE=false prescribes only;
#   PERF=FILE records rxd with perf)
#
#   COMPARE=DIR ROUNDS=R bash deploy/loadbench.sh [N] [CLIENTS]
#   compares this tree's rxd with DIR/bin/rxd (another checkout, built by
#   its own deploy/build.sh): both serve at once, each on a schema of its
#   own, and R rounds of N prescriptions go to each in turn (A B B A …).
#   This machine's speed drifts by 15 % within minutes with its host, more
#   than most changes are worth; pairs a few seconds apart see the same
#   host, so the per-pair ratio is what to read. COMPARE_DSN=URL gives B
#   another way to the same database (its Unix socket, say).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
C=${2:-32}
RATE_N=${RATE_N:-20000}
# A running exchange has its connections open, its statements prepared and
# planned, its pages in memory: the first seconds of a new one measure the
# start, not the exchange (8 000 prescriptions measured from a cold start
# gave 680/s, 30 000 gave 855/s). So WARM prescriptions go first, unmeasured.
WARM=${WARM:-3000}
DISPENSE=${DISPENSE:-true}
: "${NUSKHA_TEST_POSTGRES:?set NUSKHA_TEST_POSTGRES to a PostgreSQL URL}"
for s in synchronous_commit fsync; do
  v=$(psql "$NUSKHA_TEST_POSTGRES" -Atc "SHOW $s")
  [ "$v" = on ] || { echo "PostgreSQL has $s=$v: the benchmark measures durable commits only" >&2; exit 1; }
done
echo "PostgreSQL: synchronous_commit=on fsync=on commit_delay=$(psql "$NUSKHA_TEST_POSTGRES" -Atc 'SHOW commit_delay')"
W=$(mktemp -d)
schema=lb_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  for sc in "$schema" "${schema}_b"; do
    psql "$NUSKHA_TEST_POSTGRES" -qc "DROP SCHEMA IF EXISTS $sc CASCADE" >/dev/null 2>&1 || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
# ports N: N distinct free ports (deploy/ports.py says why so).
ports() { python3 deploy/ports.py "$1"; }
wait_for() { # NAME PID HOST:PORT
  for _ in $(seq 1 600); do
    openssl s_client -connect "$3" </dev/null >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "$1 stopped" >&2; exit 1; }
    sleep 0.1
  done
  echo "$1 is not listening on $3" >&2; exit 1
}

bash deploy/build.sh
read -r p1 p2 p3 p4 p5 < <(ports 5)
ADMIN=127.0.0.1:$p1 PUBLIC=127.0.0.1:$p2 HTTP=127.0.0.1:$p3 RXD=127.0.0.1:$p4
bin/trustd init -dir "$W/trustd" -officer alice -officer bob -admin-listen "$ADMIN" -public-listen "$PUBLIC" -http-listen "$HTTP" >/dev/null 2>&1
bin/trustd serve -config "$W/trustd/trustd.json" 2>"$W/trustd.log" &
wait_for trustd $! "$ADMIN"
h=$W/trustd/handover
bin/rxload setup -dir "$W/load" -admin-url "https://$ADMIN" -ca-file "$W/trustd/ca/root.crt" \
  -requester-cert "$h/alice/alice.crt" -requester-key "softkey:path=$h/alice/alice.key?pin-source=$h/alice/alice.pass" \
  -approver-cert "$h/bob/bob.crt" -approver-key "softkey:path=$h/bob/bob.key?pin-source=$h/bob/bob.pass" \
  -persons $((WARM + N * ${ROUNDS:-1} + RATE_N * $(wc -w <<<"${RATES:-1000}")))

mapfile -t tls <"$W/load/rxd.args"
# rxd's audit log keys (docs/audit-log.md), encrypted files as make run keeps them.
A=$W/audit
mkdir -p "$A" && chmod 700 "$A"
head -c 24 /dev/urandom | base64 >"$A/keys.pass"
audit=(-audit-pseudonym-key "softkey:path=$A/pseudonym.key?pin-source=$A/keys.pass"
  -audit-seal-key "softkey:path=$A/seal.key?pin-source=$A/keys.pass" -audit-note-key "$A/note.key" -audit-origin loadbench/rxd-audit)
bin/rxd audit-keys "${audit[@]}" >"$A/note.vkey"
# cpu_by_comm: the CPU time, in clock ticks, of rxd, rxload, postgres and
# every other process, from /proc.
cpu_by_comm() {
  for p in /proc/[0-9]*; do
    { read -r c <"$p/comm" && read -r st <"$p/stat"; } 2>/dev/null || continue
    set -- ${st##*) }
    echo "$c $((${12} + ${13}))"
  done | awk '{t[$1 ~ /^(rxd|rxload|postgres)$/ ? $1 : "other"] += $2} END {for (k in t) print k, t[k]}'
}
# start_rxd BIN SCHEMA LISTEN [DSN]: BIN serves the exchange on a new
# schema of its own, through DSN ($NUSKHA_TEST_POSTGRES unless given);
# sets rxd (its pid) and url.
start_rxd() {
  local dsn=${4:-$NUSKHA_TEST_POSTGRES} sep='?'
  case $dsn in *\?*) sep='&' ;; esac
  psql "$NUSKHA_TEST_POSTGRES" -qc "CREATE SCHEMA $2"
  echo "$dsn${sep}search_path=$2" >"$W/dsn-$2"
  local db=(-db-driver postgres -dsn-file "$W/dsn-$2")
  "$1" import-registry "${db[@]}" -mode full -quiet "$W/load/registry.csv"
  "$1" import-catalogue "${db[@]}" -label sample -valid-from 1400-01-01 -drugs deploy/sample/drugs.csv -services deploy/sample/services.csv
  # The per-caller budgets are a pharmacy's; the load tool is thousands of
  # pharmacies' worth through one vendor certificate.
  # GOGC and GOMEMLIMIT as deploy/systemd/rxd@.service sets them.
  GOGC=400 GOMEMLIMIT=1GiB "$1" serve "${db[@]}" -listen "$3" "${tls[@]}" "${audit[@]}" -caller-rate 1000000 -caller-burst 1000000 \
    -daily-lookups 100000000 -max-conns 4096 -max-conns-per-ip 4096 ${RXD_FLAGS:-} 2>"$W/rxd-$2.log" &
  rxd=$!
  wait_for rxd $rxd "$3"
  url=https://localhost:${3#*:}
}
start_rxd bin/rxd "$schema" "$RXD"

if [ -n "${COMPARE:-}" ]; then
  ROUNDS=${ROUNDS:-1}
  bash "$COMPARE/deploy/build.sh"
  url_a=$url
  start_rxd "$COMPARE/bin/rxd" "${schema}_b" "127.0.0.1:$p5" "${COMPARE_DSN:-}"
  url_b=$url
  # run URL FIRST: one closed loop; prints its rate and the CPU time, in
  # µs per prescription, of rxd and PostgreSQL together (the load tool's,
  # which signs its prescriptions first, is left out).
  run() {
    local c0 c1
    c0=$(cpu_by_comm | awk '$1 == "rxd" || $1 == "postgres" {t += $2} END {print t}')
    bin/rxload run -dir "$W/load" -url "$1" -n "$N" -first "$2" -c "$C" -dispense=false >"$W/run.log" 2>&1 || { cat "$W/run.log" >&2; exit 1; }
    c1=$(cpu_by_comm | awk '$1 == "rxd" || $1 == "postgres" {t += $2} END {print t}')
    awk -v hz="$(getconf CLK_TCK)" -v n="$N" -v dc=$((c1 - c0)) '$1 == "prescribe" {
      if ($3 != 0) { print $3 " refused" > "/dev/stderr"; exit 1 }
      printf "%d %.0f\n", $4, dc / hz / n * 1e6 }' "$W/run.log"
  }
  for u in "$url_a" "$url_b"; do # each serves WARM first, unmeasured
    bin/rxload run -dir "$W/load" -url "$u" -n "$WARM" -c "$C" -dispense=false >"$W/warm.log" 2>&1 || { cat "$W/warm.log" >&2; exit 1; }
  done
  echo "== $ROUNDS rounds of $N prescriptions, $C clients: A is this tree's rxd, B is $COMPARE's"
  echo "(accepted/s, and µs of CPU per prescription of rxd with PostgreSQL)"
  for r in $(seq 0 $((ROUNDS - 1))); do
    first=$((WARM + r * N))
    if [ $((r % 2)) -eq 0 ]; then
      a=$(run "$url_a" "$first")
      b=$(run "$url_b" "$first")
    else
      b=$(run "$url_b" "$first")
      a=$(run "$url_a" "$first")
    fi
    echo "$((r + 1)) $a $b" | awk '{printf "round %s: A %s/s %s µs  B %s/s %s µs  B/A rate %.3f CPU %.3f\n", $1, $2, $3, $4, $5, $4 / $2, $5 / $3}'
  done | tee "$W/rounds"
  median() { sort -n | awk '{v[NR] = $1} END {printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
  echo "median over $ROUNDS rounds: B/A rate $(awk '{print $(NF - 2)}' "$W/rounds" | median), B/A CPU per prescription $(awk '{print $NF}' "$W/rounds" | median)"
  exit 0
fi

# Where the two cores go while prescriptions are accepted: the CPU time of
# each process over 4 s from 1 s after rxload starts submitting, as a share
# of one core (200 % is the whole machine), from /proc. A closed loop
# shorter than 5 s is over before the window closes: the split then shows
# an idle machine.
cpu_split() {
  for _ in $(seq 1 1500); do grep -q '^signed' "$1" 2>/dev/null && break; sleep 0.2; done
  sleep 1
  local before after
  before=$(cpu_by_comm; awk '/^cpu /{print "idle", $5 + $6}' /proc/stat)
  sleep 4
  after=$(cpu_by_comm; awk '/^cpu /{print "idle", $5 + $6}' /proc/stat)
  join <(sort <<<"$before") <(sort <<<"$after") |
    awk -v hz="$(getconf CLK_TCK)" '{printf "%s%s %.0f%%", sep, $1, ($3 - $2) / hz / 4 * 100; sep = ", "} END {print ""}' |
    sed 's/^/CPU while prescribing (% of one core): /' >"$2"
}
if [ "$WARM" -gt 0 ]; then # WARM=0 measures a cold start
  echo "== warm-up: $WARM prescriptions, not measured"
  bin/rxload run -dir "$W/load" -url "$url" -n "$WARM" -c "$C" -dispense=false >"$W/warm.log" 2>&1 || { cat "$W/warm.log" >&2; exit 1; }
fi
if [ -n "${PERF:-}" ]; then
  # The CPU profile of rxd under the closed loop's first 20 s: perf report -i "$PERF".
  perf record -F 499 -g -p "$rxd" -o "$PERF" -- sleep 20 >/dev/null 2>&1 &
fi
then=; [ "$DISPENSE" = true ] && then=", then claim + dispense + close"
echo "== closed loop: $N prescriptions, $C clients$then"
cpu_split "$W/closed.log" "$W/cpu" &
bin/rxload run -dir "$W/load" -url "$url" -n "$N" -first "$WARM" -c "$C" -dispense="$DISPENSE" 2>&1 | tee "$W/closed.log"
wait $!
cat "$W/cpu"
first=$((WARM + N))
for rate in ${RATES:-1000}; do
  echo "== open loop: $RATE_N prescriptions offered at $rate/s"
  bin/rxload run -dir "$W/load" -url "$url" -n "$RATE_N" -first "$first" -c "${RATE_C:-256}" -rate "$rate" -dispense=false
  first=$((first + RATE_N))
done
echo "rxd's peak memory: $(awk '/^VmHWM/ {printf "%d MB", $2 / 1024}' /proc/$rxd/status)"

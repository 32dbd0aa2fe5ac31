#!/usr/bin/env bash
# Fault tests of the highly available deployment (issue 14; docs/operations-ha.md),
# on loopback only: a PostgreSQL cluster of three Patroni nodes (synchronous
# replication, strict) on three etcd members, HAProxy sending writes to the
# leader and spreading rxd's callers over two rxd instances, trustd and both rxd
# on the cluster, rxd's exchange key on a SoftHSM2 token, pgBackRest archiving.
# Under a steady open-loop load from rxload (every acknowledged prescription
# recorded), it injects:
#   (a) kill -9 of the leader node (Patroni and every PostgreSQL process of it)
#   (b) kill -9 of an rxd instance
#   (c) a rolling restart of the etcd members
#   (d) the SoftHSM2 token directory removed, then restored
# and for each prints the unavailability (from the fault to the first
# acknowledgement after the longest silence), the requests that failed for
# good, the attempts retried, and the acknowledged prescriptions missing from
# the leader (which MUST be 0). In (a) it also times trustd (on the cluster
# through HAProxy) going unready and ready again and answering an officer's
# write again by itself, which it MUST within TRUSTD_BOUND seconds. Then it restores a pgBackRest backup to a
# point in time into a fresh data directory and compares row counts and
# checksums with what the leader held at that time.
#
#   bash deploy/faulttest.sh            (as root; deploy/test.sh runs it)
#   RATE=40 KEEP=1 bash deploy/faulttest.sh   (KEEP: leave the work directory)
#
# It needs patroni, etcd, etcdctl, haproxy, pgbackrest, PostgreSQL, SoftHSM2,
# OpenSC and curl (deploy/test.sh installs them) and ends within LIMIT seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RATE=${RATE:-40}
LIMIT=${LIMIT:-420}
PHASE_SECONDS=${PHASE_SECONDS:-30}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: the PostgreSQL nodes run as the postgres user"
for c in patroni etcd etcdctl haproxy pgbackrest curl softhsm2-util pkcs11-tool setpriv; do
  command -v "$c" >/dev/null || die "$c is not installed (deploy/test.sh installs it)"
done
PY=/usr/bin/python3
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

W=$(mktemp -d /tmp/nuskha-fault.XXXXXX)
chmod 711 "$W"
PIDS=()           # every process started here, ended by id at exit
declare -A PID    # by role: etcd1…, node1…, rxd1…, trustd, haproxy
cleanup() {
  rc=$?
  set +e
  for name in "${!PID[@]}"; do
    case $name in node*) kill -TERM "${PID[$name]}" 2>/dev/null ;; esac
  done
  for i in 1 2 3; do # Patroni stops its PostgreSQL; what a kill left behind is ended by id
    for _ in $(seq 1 50); do kill -0 "${PID[node$i]:-0}" 2>/dev/null || break; sleep 0.1; done
    pm=$(head -1 "$W/pg$i/postmaster.pid" 2>/dev/null)
    [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null && kill -KILL "$pm" $(ps -o pid= --ppid "$pm") 2>/dev/null
  done
  [ -n "${RESTORE_PM:-}" ] && kill -KILL "$RESTORE_PM" 2>/dev/null
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    echo "--- the logs of the failed run (in $W):" >&2
    for f in "$W"/etcd*.log "$W"/patroni*.log "$W"/haproxy.log "$W"/rxd*.log "$W"/trustd.log "$W"/pgbackrest.log "$W"/load-*.err; do
      [ -f "$f" ] && { echo "--- $f" >&2; tail -8 "$f" >&2; }
    done
  fi
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $W" >&2; else rm -rf "$W"; fi
  exit "$rc"
}
trap cleanup EXIT
# The whole run is bounded: a hang anywhere ends it as a failure.
trap 'exit 143' TERM INT
(
  trap 'kill $s 2>/dev/null; exit 0' TERM
  sleep "$LIMIT" &
  s=$!
  wait $s
  echo "FAIL: the fault tests did not end within $LIMIT s" >&2
  kill -TERM $$
) 2>/dev/null &
PIDS+=($!)
START=$(date +%s)

# ports N: N distinct free ports (deploy/ports.py says why so).
ports() { "$PY" "$ROOT/deploy/ports.py" "$1"; }
# render TEMPLATE OUT NAME=VALUE…: the template with each @NAME@ replaced.
render() {
  local in=$1 out=$2 text
  shift 2
  text=$(<"$in")
  for kv in "$@"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
  if grep -q '@[A-Z0-9_]*@' <<<"$text"; then die "$in: $(grep -o '@[A-Z0-9_]*@' <<<"$text" | sort -u | tr '\n' ' ')left unfilled"; fi
  printf '%s\n' "$text" >"$out"
}
# wait_until SECONDS WHAT COMMAND…: poll until the command succeeds.
wait_until() {
  local limit=$1 what=$2
  shift 2
  local end=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "$what: not within ${limit}s"
    sleep 0.2
  done
}
now_ns() { date +%s%N; }

# --- ports and secrets -------------------------------------------------------
H=127.0.0.1
read -r ETCD_C1 ETCD_P1 PG1 REST1 ETCD_C2 ETCD_P2 PG2 REST2 ETCD_C3 ETCD_P3 PG3 REST3 \
  WRITE READ RXD_LB RXD1 RXD2 ADMIN PUBLIC HTTP RESTORE_PORT < <(ports 21)
secret() { head -c 18 /dev/urandom | base64 | tr -d '/+='; }
SUPERPW=$(secret) REPLPW=$(secret) APPPW=$(secret)
SOCK=$W/run
mkdir -p "$SOCK" "$W/repo" "$W/pgbackrest" "$W/pgbackrest-log" "$W/patroni"
for i in 1 2 3; do install -d -m 700 -o postgres -g postgres "$W/pg$i"; done
chown postgres:postgres "$SOCK" "$W/repo" "$W/pgbackrest" "$W/pgbackrest-log" "$W/patroni"
ETCD_HOSTS="$H:$ETCD_C1,$H:$ETCD_C2,$H:$ETCD_C3"
ETCD_ENDPOINTS="http://$H:$ETCD_C1,http://$H:$ETCD_C2,http://$H:$ETCD_C3"
INITIAL="etcd1=http://$H:$ETCD_P1,etcd2=http://$H:$ETCD_P2,etcd3=http://$H:$ETCD_P3"

# --- etcd ---------------------------------------------------------------------
start_etcd() {
  local i=$1
  etcd --config-file "$W/etcd$i.yml" >>"$W/etcd$i.log" 2>&1 &
  PID[etcd$i]=$!
  PIDS+=($!)
}
for i in 1 2 3; do
  c=ETCD_C$i p=ETCD_P$i
  render deploy/ha/etcd.yml.in "$W/etcd$i.yml" NAME=etcd$i DATA_DIR="$W/etcd$i" HOST=$H CLIENT_PORT=${!c} PEER_PORT=${!p} INITIAL_CLUSTER="$INITIAL"
  start_etcd "$i"
done
etcd_healthy() { ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" --command-timeout=2s endpoint health; }
wait_until 60 "three healthy etcd members" etcd_healthy
log "etcd: three members on $ETCD_HOSTS"

# --- pgBackRest and Patroni --------------------------------------------------------
render deploy/ha/pgbackrest.conf.in "$W/pgbackrest.conf" REPO_DIR="$W/repo" LOCK_DIR="$W/pgbackrest" LOG_DIR="$W/pgbackrest-log" SOCKET_DIR="$SOCK"
chmod 644 "$W/pgbackrest.conf"
for i in 1 2 3; do
  pg=PG$i rest=REST$i
  render deploy/ha/patroni.yml.in "$W/patroni$i.yml" NAME=node$i HOST=$H REST_PORT=${!rest} PG_PORT=${!pg} ETCD_HOSTS="$ETCD_HOSTS" \
    DATA_DIR="$W/pg$i" PG_BIN="$PG_BIN" PGPASS="$W/patroni/pg$i.pgpass" SUPERUSER_PASSWORD="$SUPERPW" REPLICATION_PASSWORD="$REPLPW" \
    SOCKET_DIR="$SOCK" PGBACKREST_CONF="$W/pgbackrest.conf" CLIENT_CIDR=127.0.0.1/32 SHARED_BUFFERS=16MB
  chown postgres:postgres "$W/patroni$i.yml"
  chmod 600 "$W/patroni$i.yml"
done
start_node() {
  local i=$1
  # setpriv execs: the pid is Patroni's own, for kill -9.
  (cd "$W" && exec setpriv --reuid=postgres --regid=postgres --init-groups patroni "$W/patroni$i.yml") >>"$W/patroni$i.log" 2>&1 &
  PID[node$i]=$!
  PIDS+=($!)
}
rest() { local r=REST$1; curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$H:${!r}/$2"; }
leader() { for i in 1 2 3; do [ "$(rest "$i" primary)" = 200 ] && { echo "$i"; return 0; }; done; return 1; }
# cluster_ready N: a leader, N members streaming, one of them the synchronous standby.
cluster_ready() {
  local l
  l=$(leader) || return 1
  local r=REST$l
  curl -s -m 2 "http://$H:${!r}/cluster" | "$PY" -c '
import json, sys
m = json.load(sys.stdin)["members"]
running = [x for x in m if x["state"] in ("running", "streaming")]
sync = [x for x in m if x["role"] == "sync_standby" and x["state"] in ("running", "streaming")]
sys.exit(0 if len(running) >= int(sys.argv[1]) and sync else 1)' "$1"
}
start_node 1
wait_until 90 "node1 bootstrapped as leader" leader
start_node 2
start_node 3
wait_until 120 "two replicas streaming, one synchronous" cluster_ready 3
log "Patroni: leader node$(leader), two replicas (synchronous_mode_strict)"

# --- HAProxy ------------------------------------------------------------------
render deploy/ha/haproxy.cfg.in "$W/haproxy.cfg" HOST=$H WRITE_PORT=$WRITE READ_PORT=$READ RXD_PORT=$RXD_LB \
  NODE1=node1 NODE1_HOST=$H NODE1_PG=$PG1 NODE1_REST=$REST1 NODE2=node2 NODE2_HOST=$H NODE2_PG=$PG2 NODE2_REST=$REST2 \
  NODE3=node3 NODE3_HOST=$H NODE3_PG=$PG3 NODE3_REST=$REST3 RXD1="$H:$RXD1" RXD2="$H:$RXD2"
haproxy -c -q -f "$W/haproxy.cfg" || die "haproxy -c refuses $W/haproxy.cfg"
haproxy -db -f "$W/haproxy.cfg" >>"$W/haproxy.log" 2>&1 &
PID[haproxy]=$!
PIDS+=($!)
as_super() { PGPASSWORD=$SUPERPW psql -X -q -At -v ON_ERROR_STOP=1 -h $H -p "$WRITE" -U postgres "$@"; }
# HAProxy takes every server as up until its checks say otherwise: the
# write port is trusted once ten connections in a row reach the leader.
write_port_is_leader() {
  for _ in $(seq 1 10); do [ "$(as_super -d postgres -c 'SELECT pg_is_in_recovery()')" = f ] || return 1; done
}
wait_until 30 "HAProxy's write port reaching the leader only" write_port_is_leader
as_super -d postgres -v pw="$APPPW" <<'SQL'
SELECT format('CREATE ROLE nuskha LOGIN PASSWORD %L', :'pw') \gexec
CREATE DATABASE rxd OWNER nuskha;
CREATE DATABASE trustd OWNER nuskha;
SQL
# Through HAProxy (trustd, rxd1, the checks) and, for rxd2, the driver's own
# failover: every node named, target_session_attrs=read-write.
echo "postgres://nuskha:$APPPW@$H:$WRITE/trustd?sslmode=disable&connect_timeout=3" >"$W/trustd.dsn"
echo "postgres://nuskha:$APPPW@$H:$WRITE/rxd?sslmode=disable&connect_timeout=3" >"$W/rxd1.dsn"
echo "postgres://nuskha:$APPPW@$H:$PG1,$H:$PG2,$H:$PG3/rxd?sslmode=disable&connect_timeout=3&target_session_attrs=read-write" >"$W/rxd2.dsn"
chmod 600 "$W"/*.dsn
as_rxd() { PGPASSWORD=$SUPERPW psql -X -q -At -v ON_ERROR_STOP=1 -h $H -p "$WRITE" -U postgres -d rxd "$@"; }

log "pgBackRest: stanza and a full backup from the leader"
backrest() { # as postgres, against the leader
  local l pg
  l=$(leader)
  pg=PG$l
  setpriv --reuid=postgres --regid=postgres --init-groups pgbackrest --config="$W/pgbackrest.conf" --stanza=nuskha \
    --pg1-path="$W/pg$l" --pg1-port="${!pg}" "$@"
}
backrest stanza-create >>"$W/pgbackrest.log" 2>&1 || die "pgbackrest stanza-create (see $W/pgbackrest-log)"
backrest check >>"$W/pgbackrest.log" 2>&1 || die "pgbackrest check: WAL is not archived"

# --- trustd, the load's keys, rxd ---------------------------------------------------
log "building the binaries"
bash deploy/build.sh
log "trustd on the cluster; rxload setup (rxd's exchange key on a SoftHSM2 token)"
bin/trustd init -dir "$W/trustd" -officer alice -officer bob -store postgres -dsn-file "$W/trustd.dsn" \
  -admin-listen "$H:$ADMIN" -public-listen "$H:$PUBLIC" -http-listen "$H:$HTTP" >"$W/trustd-init.log" 2>&1 || die "trustd init"
bin/trustd serve -config "$W/trustd/trustd.json" 2>"$W/trustd.log" &
PID[trustd]=$!
PIDS+=($!)
tls_up() { openssl s_client -connect "$1" </dev/null; }
wait_until 60 "trustd listening" tls_up "$H:$ADMIN"

export SOFTHSM2_CONF=$W/softhsm2.conf
mkdir -p "$W/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$W/tokens" >"$SOFTHSM2_CONF"
echo -n 246810 >"$W/token.pin"
chmod 600 "$W/token.pin"
softhsm2-util --init-token --free --label rxd-exchange --pin 246810 --so-pin 13579111 >/dev/null
EXCHANGE_KEY="pkcs11:token=rxd-exchange;object=exchange?module-path=$SOFTHSM_MODULE&pin-source=$W/token.pin"
PERSONS=$((RATE * PHASE_SECONDS * 5 + 2000))
h=$W/trustd/handover
bin/rxload setup -dir "$W/load" -admin-url "https://$H:$ADMIN" -ca-file "$W/trustd/ca/root.crt" \
  -requester-cert "$h/alice/alice.crt" -requester-key "softkey:path=$h/alice/alice.key?pin-source=$h/alice/alice.pass" \
  -approver-cert "$h/bob/bob.crt" -approver-key "softkey:path=$h/bob/bob.key?pin-source=$h/bob/bob.pass" \
  -practitioners 4 -pharmacies 2 -persons "$PERSONS" -exchange-key "$EXCHANGE_KEY" >"$W/rxload-setup.log" 2>&1 || die "rxload setup"
db1=(-db-driver postgres -dsn-file "$W/rxd1.dsn")
bin/rxd import-registry "${db1[@]}" -mode full -quiet "$W/load/registry.csv" >"$W/import.log" 2>&1 || die "rxd import-registry"
bin/rxd import-catalogue "${db1[@]}" -label sample -valid-from 1400-01-01 -drugs deploy/sample/drugs.csv -services deploy/sample/services.csv >>"$W/import.log" 2>&1 || die "rxd import-catalogue"
# rxd's audit log keys, shared by both instances (one log, one pseudonym
# key over one database): encrypted key files, as make run keeps them.
AUDIT=$W/audit
mkdir -p "$AUDIT" && chmod 700 "$AUDIT"
head -c 24 /dev/urandom | base64 >"$AUDIT/keys.pass"
AUDIT_FLAGS=(-audit-pseudonym-key "softkey:path=$AUDIT/pseudonym.key?pin-source=$AUDIT/keys.pass"
  -audit-seal-key "softkey:path=$AUDIT/seal.key?pin-source=$AUDIT/keys.pass"
  -audit-note-key "$AUDIT/note.key" -audit-origin faulttest/rxd-audit)
bin/rxd audit-keys "${AUDIT_FLAGS[@]}" >"$AUDIT/note.vkey" 2>>"$W/import.log" || die "rxd audit-keys"
mapfile -t TLS <"$W/load/rxd.args"
start_rxd() {
  local i=$1 p=RXD$1
  bin/rxd serve -db-driver postgres -dsn-file "$W/rxd$i.dsn" -listen "$H:${!p}" "${TLS[@]}" "${AUDIT_FLAGS[@]}" \
    -caller-rate 1000000 -caller-burst 1000000 -daily-lookups 100000000 -max-conns 4096 -max-conns-per-ip 4096 2>>"$W/rxd$i.log" &
  PID[rxd$i]=$!
  PIDS+=($!)
}
start_rxd 1
start_rxd 2
wait_until 60 "rxd1 listening" tls_up "$H:$RXD1"
wait_until 60 "rxd2 listening" tls_up "$H:$RXD2"
log "rxd: two instances behind HAProxy ($H:$RXD_LB); rxd1 through HAProxy's write port, rxd2 with a multi-host DSN"

# --- the load and its figures ------------------------------------------------------
FIRST=0
N=$((RATE * PHASE_SECONDS))
start_load() { # PHASE
  : >"$W/acked-$1"
  bin/rxload run -dir "$W/load" -url "https://localhost:$RXD_LB" -n "$N" -first "$FIRST" -c 16 -rate "$RATE" \
    -dispense=false -retry 90s -acked "$W/acked-$1" >"$W/load-$1.out" 2>"$W/load-$1.err" &
  LOAD=$!
  PIDS+=($!)
  FIRST=$((FIRST + N))
}
acks() { wc -l <"$W/acked-$1"; }
acks_at_least() { [ "$(acks "$1")" -ge "$2" ]; }
# settle PHASE: the load has been acknowledged steadily for a while.
settle() { wait_until 120 "$1: the load under way" acks_at_least "$1" $((RATE * 5)); }
finish_load() { # PHASE: wait for rxload, bounded
  local end=$(($(date +%s) + PHASE_SECONDS + 150))
  while kill -0 "$LOAD" 2>/dev/null; do
    [ "$(date +%s)" -lt "$end" ] || die "$1: rxload did not finish"
    sleep 0.5
  done
  wait "$LOAD" || die "$1: rxload failed: $(tail -3 "$W/load-$1.err")"
}
# lost PHASE: acknowledged prescriptions the leader does not hold.
lost() {
  awk '$2 == "prescribe" {print $3}' "$W/acked-$1" >"$W/acked-$1.ids"
  as_rxd <<SQL
CREATE TEMP TABLE acked (id text PRIMARY KEY);
\copy acked FROM '$W/acked-$1.ids'
SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM prescriptions p WHERE p.id = a.id);
SQL
}
RESULTS=()
# figures PHASE FAULT_NS LABEL: unavailability, failures, retries, losses;
# fails on a loss.
figures() {
  local phase=$1 t0=$2 outage recovered ok failed retried lostn
  # The longest time after the fault without an acknowledgement (from the
  # fault, or from the last acknowledgement before it), and the time from
  # the fault to the acknowledgement that ended that silence: after a
  # failover, the failover time; without an outage, jitter.
  read -r outage recovered < <(awk '{print $1}' "$W/acked-$phase" | sort -n | awk -v t0="$t0" '
    { if ($1 > t0) { from = (prev > t0 ? prev : t0); if ($1 - from > best) { best = $1 - from; end = $1 } } prev = $1 }
    END { if (end == 0) print "none none"; else printf "%.2f %.2f\n", best / 1e9, (end - t0) / 1e9 }')
  read -r ok failed < <(awk '$1 == "prescribe" {print $2, $3}' "$W/load-$phase.out")
  retried=$(awk '/^retried after/ {n += $(NF-1)} END {print n + 0}' "$W/load-$phase.out")
  lostn=$(lost "$phase")
  RESULTS+=("$(printf '%-36s %8s %10s %6s %7s %8s %5s' "$3" "$outage" "$recovered" "$ok" "$failed" "$retried" "$lostn")")
  printf '    %s: no acknowledgement for %s s (the first after it %s s after the fault), %s acknowledged, %s failed, %s attempts retried (%s), %s acknowledged but lost\n' \
    "$phase" "$outage" "$recovered" "$ok" "$failed" "$retried" "$(grep '^retried after' "$W/load-$phase.out" | awk '{printf "%s%s %s", sep, $3, $(NF-1); sep=", "}')" "$lostn"
  [ "$lostn" = 0 ] || die "$phase: $lostn acknowledged prescriptions are not on the leader"
  [ "$outage" != none ] || die "$phase: no acknowledgement after the fault: the load did not resume"
  if ! { [ "$ok" -gt 0 ] && [ "$failed" -eq 0 ]; }; then
    # What they were refused with, and what rxd said of every refusal
    # other than "come back later": the log tails below may not reach it.
    cat "$W/load-$phase.out" >&2
    grep -h '"request failed"' "$W"/rxd*.log | grep -v '"code":"unavailable"' | tail -5 >&2 || true
    die "$phase: $failed prescriptions failed for good (after retrying 90 s)"
  fi
}
kill_node() { # kill -9 a whole node: Patroni and every PostgreSQL process of it
  local i=$1 pm
  pm=$(head -1 "$W/pg$i/postmaster.pid")
  kill -KILL "${PID[node$i]}" "$pm" $(ps -o pid= --ppid "$pm") 2>/dev/null || true
  wait "${PID[node$i]}" 2>/dev/null || true
}

# trustd through the failover, watched from the kill: an officer's write
# (POST /admin/v1/crl: a CRL number reserved in the database, the CRL signed
# and audited) tried every 0.2 s until it is answered 201, and /readyz on the
# public listener going unready (503) and ready (200) again. Each probe
# writes the time it saw its event, or gives up TRUSTD_BOUND s after the kill.
TRUSTD_BOUND=${TRUSTD_BOUND:-60}
trustd_crl() {
  curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST --cacert "$W/trustd/ca/root.crt" \
    --cert "$h/alice/alice.crt" --key "$h/alice/alice.key" --pass "$(<"$h/alice/alice.pass")" "https://$H:$ADMIN/admin/v1/crl"
}
trustd_ready() { curl -s -m 3 -o /dev/null -w '%{http_code}' --cacert "$W/trustd/ca/root.crt" "https://$H:$PUBLIC/readyz"; }
probe_trustd() { # T_NS: in the background, writes $W/trustd-{written,unready,ready}
  local end=$(($1 / 1000000000 + TRUSTD_BOUND))
  (
    until [ "$(trustd_crl)" = 201 ]; do [ "$(date +%s)" -lt "$end" ] || exit 0; sleep 0.2; done
    now_ns >"$W/trustd-written"
  ) &
  PIDS+=($!)
  PROBES=($!)
  (
    until [ "$(trustd_ready)" != 200 ]; do [ "$(date +%s)" -lt "$end" ] || exit 0; sleep 0.2; done
    now_ns >"$W/trustd-unready"
    until [ "$(trustd_ready)" = 200 ]; do [ "$(date +%s)" -lt "$end" ] || exit 0; sleep 0.2; done
    now_ns >"$W/trustd-ready"
  ) &
  PIDS+=($!)
  PROBES+=($!)
}
# trustd_figures T_NS: seconds from the kill to each event; fails unless
# trustd wrote again within the bound, and — if it was seen unready (a
# failover it rides through between two polls is no failure) — ready again.
trustd_figures() {
  wait "${PROBES[@]}"
  local secs
  secs() { awk -v a="$1" -v b="$(<"$W/trustd-$2")" 'BEGIN {printf "%.2f", (b - a) / 1e9}'; }
  [ -s "$W/trustd-written" ] || die "(a) trustd: an officer's write not answered again within ${TRUSTD_BOUND}s of the kill by itself (see $W/trustd.log)"
  local ready="never seen unready"
  if [ -s "$W/trustd-unready" ]; then
    [ -s "$W/trustd-ready" ] || die "(a) trustd: /readyz not ready again within ${TRUSTD_BOUND}s of the kill by itself (see $W/trustd.log)"
    ready="unready after $(secs "$1" unready) s, ready again after $(secs "$1" ready) s"
  fi
  TRUSTD_RESULT="(a) trustd: /readyz $ready; an officer's write (a new CRL) answered again $(secs "$1" written) s after the kill"
  printf '    %s\n' "$TRUSTD_RESULT"
}

# (a) the leader node dies.
log "(a) kill -9 the PostgreSQL leader node under $RATE prescriptions/s"
start_load a
settle a
[ "$(trustd_crl)" = 201 ] && [ "$(trustd_ready)" = 200 ] || die "(a) trustd does not write or is not ready before the fault"
old=$(leader)
T=$(now_ns)
kill_node "$old"
probe_trustd "$T"
wait_until 60 "(a) a replica promoted" leader
new=$(leader)
[ "$new" != "$old" ] || die "(a) node$old is still the leader"
finish_load a
log "(a) node$old killed, node$new promoted"
figures a "$T" "(a) leader killed (node$old -> node$new)"
trustd_figures "$T"
# The killed node comes back as a replica (pg_rewind), so that the next
# faults find three nodes again.
start_node "$old"
wait_until 120 "(a) node$old back as a replica" cluster_ready 3

# (b) an rxd instance dies.
log "(b) kill -9 rxd1 under load"
start_load b
settle b
T=$(now_ns)
kill -KILL "${PID[rxd1]}"
wait "${PID[rxd1]}" 2>/dev/null || true
finish_load b
figures b "$T" "(b) rxd1 killed"
start_rxd 1
wait_until 60 "(b) rxd1 back" tls_up "$H:$RXD1"

# (c) every etcd member restarted in turn.
log "(c) rolling restart of the etcd members under load"
start_load c
settle c
before=$(leader)
T=$(now_ns)
for i in 1 2 3; do
  kill -TERM "${PID[etcd$i]}"
  wait "${PID[etcd$i]}" 2>/dev/null || true
  start_etcd "$i"
  wait_until 60 "(c) etcd$i healthy again" etcd_healthy
done
finish_load c
after=$(leader)
figures c "$T" "(c) etcd members restarted"
[ "$before" = "$after" ] || log "(c) note: the leader moved from node$before to node$after"

# (d) the HSM token disappears and comes back.
log "(d) SoftHSM2 token directory removed, then restored, under load"
start_load d
settle d
refusals() { grep -c '"code":"unavailable"' "$W/rxd1.log" "$W/rxd2.log" | awk -F: '{n += $2} END {print n + 0}'; }
r0=$(refusals)
T=$(now_ns)
mv "$W/tokens" "$W/tokens.removed"
# Gone long enough for rxd to refuse a good number of prescriptions.
more_refusals() { [ "$(refusals)" -ge $((r0 + 40)) ]; }
wait_until 30 "(d) rxd refusing with 503 unavailable while the token is gone" more_refusals
acked_then=$(acks d)
mv "$W/tokens.removed" "$W/tokens"
log "(d) token restored"
finish_load d
figures d "$T" "(d) HSM token removed and restored"
[ "$(awk -v n="$acked_then" 'NR > n' "$W/acked-d" | wc -l)" -gt 0 ] || die "(d) nothing acknowledged after the token came back"

# --- point-in-time restore ------------------------------------------------------
log "restore: full backup, writes, a target time, more writes, restore to that time"
backrest backup --type=full >>"$W/pgbackrest.log" 2>&1 || die "pgbackrest backup"
N=$((RATE * 5))
start_load r1
finish_load r1
state() { as_rxd -F ' ' "$@" -c "SELECT count(*), md5(COALESCE(string_agg(id || ':' || jws_sha256, ',' ORDER BY id), '')) FROM prescriptions"; }
read -r COUNT_T SUM_T < <(state)
TARGET=$(as_rxd -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
# Writes after the target: what the restore must not bring back.
start_load r2
finish_load r2
read -r COUNT_END _ < <(state)
[ "$COUNT_END" -gt "$COUNT_T" ] || die "restore: no writes after the target time"
# Every WAL segment up to now archived (check switches and waits).
backrest check >>"$W/pgbackrest.log" 2>&1 || die "pgbackrest check before the restore"
install -d -m 700 -o postgres -g postgres "$W/restored"
t0=$(date +%s.%N)
setpriv --reuid=postgres --regid=postgres --init-groups pgbackrest --config="$W/pgbackrest.conf" --stanza=nuskha \
  --pg1-path="$W/restored" restore --type=time --target="$TARGET" --target-action=promote >>"$W/pgbackrest.log" 2>&1 || die "pgbackrest restore"
# Standalone: its own port, no archiving, no standby to wait for.
setpriv --reuid=postgres --regid=postgres --init-groups "$PG_BIN/pg_ctl" -D "$W/restored" -l "$W/patroni/restored.log" -w -t 120 start \
  -o "-p $RESTORE_PORT -c listen_addresses=$H -c unix_socket_directories=$SOCK -c archive_mode=off -c synchronous_standby_names='' -c hot_standby=on" >/dev/null \
  || die "the restored cluster does not start"
RESTORE_PM=$(head -1 "$W/restored/postmaster.pid")
promoted() { [ "$(PGPASSWORD=$SUPERPW psql -X -At -h $H -p "$RESTORE_PORT" -U postgres -d rxd -c 'SELECT pg_is_in_recovery()')" = f ]; }
wait_until 120 "the restored cluster reaching the target and promoting" promoted
t1=$(date +%s.%N)
read -r COUNT_R SUM_R < <(PGPASSWORD=$SUPERPW psql -X -At -F ' ' -h $H -p "$RESTORE_PORT" -U postgres -d rxd \
  -c "SELECT count(*), md5(COALESCE(string_agg(id || ':' || jws_sha256, ',' ORDER BY id), '')) FROM prescriptions")
RESTORE_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
printf '    restore to %s: %s prescriptions, md5 %s (at the target: %s, %s; %s at the end)\n' "$TARGET" "$COUNT_R" "$SUM_R" "$COUNT_T" "$SUM_T" "$COUNT_END"
[ "$COUNT_R" = "$COUNT_T" ] && [ "$SUM_R" = "$SUM_T" ] || die "restore: the restored prescriptions are not those at the target time"
setpriv --reuid=postgres --regid=postgres --init-groups "$PG_BIN/pg_ctl" -D "$W/restored" -m immediate stop >/dev/null 2>&1 || true
RESTORE_PM=

echo
echo "Fault tests (deploy/faulttest.sh): 3 Patroni nodes (synchronous_mode_strict), 3 etcd, HAProxy, 2 rxd, $RATE prescriptions/s offered, open loop"
printf '%-36s %8s %10s %6s %7s %8s %5s\n' fault silence-s recovery-s acked failed retried lost
for r in "${RESULTS[@]}"; do echo "$r"; done
echo "$TRUSTD_RESULT"
echo "point-in-time restore: $COUNT_R prescriptions and their checksum as at the target time ($COUNT_END at the end), restored and replayed in ${RESTORE_SECONDS}s"
echo "PASS: every acknowledged prescription survived every fault ($(($(date +%s) - START)) s)"

#!/usr/bin/env bash
# Installs and starts what the tests need, then runs every test with the
# race detector: SoftHSM2 and OpenSC (a real PKCS#11 token), OpenSSL (an
# independent verifier), PostgreSQL (a real database) and promtool (the
# Prometheus linter for /metrics). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

SUDO=""
AS_POSTGRES=(runuser -u postgres --)
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deploy/test.sh must run as root or with sudo available" >&2; exit 1; }
  SUDO="sudo"
  AS_POSTGRES=(sudo -u postgres)
fi

# apt may be held by another process (unattended upgrades, another job):
# wait for its lock rather than fail, and retry transient fetch errors.
apt_install() {
  local tries=0
  until $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@"; do
    tries=$((tries + 1))
    [ "$tries" -ge 4 ] && { echo "apt-get install $* failed" >&2; return 1; }
    log "apt-get install failed; updating package lists and retrying ($tries)"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update || sleep 10
  done
}

missing=()
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null || missing+=(opensc)
command -v openssl >/dev/null || missing+=(openssl)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v gcc >/dev/null || missing+=(gcc)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v curl >/dev/null || missing+=(curl)
command -v systemd-analyze >/dev/null || missing+=(systemd)
# The highly available deployment's fault tests (deploy/faulttest.sh).
ha=()
command -v patroni >/dev/null || ha+=(patroni)
command -v etcd >/dev/null || ha+=(etcd-server)
command -v etcdctl >/dev/null || ha+=(etcd-client)
command -v haproxy >/dev/null || ha+=(haproxy)
command -v pgbackrest >/dev/null || ha+=(pgbackrest)
# promtool (Debian package prometheus) lints what the daemons export on
# /metrics; the package's own Prometheus server is not the tests'.
command -v promtool >/dev/null || ha+=(prometheus)
missing+=("${ha[@]}")
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
fi
# The packages' own services (etcd on 2379, HAProxy's default config,
# Patroni without a config) are not the test's: the fault tests run their
# own instances on loopback ports of their own. Stopped and disabled if
# the installation started them.
for svc in etcd haproxy patroni prometheus; do
  case " ${ha[*]} " in *" $svc"*) ;; *) continue ;; esac
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  else
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  fi
done

# PostgreSQL: start the installed cluster (exit code 2 means it already runs)
# and make a password role reachable over 127.0.0.1, as production connects.
read -r PG_VERSION PG_CLUSTER PG_PORT < <(pg_lsclusters --no-header | awk 'NR==1 {print $1, $2, $3}')
if [ -z "${PG_VERSION:-}" ]; then
  log "creating a PostgreSQL cluster"
  PG_VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
  $SUDO pg_createcluster "$PG_VERSION" main
  read -r PG_VERSION PG_CLUSTER PG_PORT < <(pg_lsclusters --no-header | awk 'NR==1 {print $1, $2, $3}')
fi
log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER on port $PG_PORT"
rc=0
$SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
  echo "pg_ctlcluster start failed with $rc" >&2
  exit 1
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
  sleep 1
done
PG_PASSWORD=${NUSKHA_TEST_PG_PASSWORD:-nuskha-test}
"${AS_POSTGRES[@]}" psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 -v pw="$PG_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE nuskha LOGIN PASSWORD %L', :'pw') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nuskha') \gexec
SELECT format('ALTER ROLE nuskha PASSWORD %L', :'pw') \gexec
SELECT 'CREATE DATABASE nuskha_test OWNER nuskha' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'nuskha_test') \gexec
SQL

# An independent JOSE implementation (panva/jose, pinned by package-lock.json)
# for the interoperability tests.
log "installing test/interop (npm ci)"
for attempt in 1 2 3; do
  npm ci --prefix test/interop --no-audit --no-fund >/dev/null && break
  [ "$attempt" -eq 3 ] && { echo "npm ci failed" >&2; exit 1; }
  sleep 5
done

export NUSKHA_TEST_POSTGRES="postgres://nuskha:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/nuskha_test?sslmode=disable"
# Fail, never skip, when a real component is missing.
export NUSKHA_REQUIRE_SOFTHSM=1 NUSKHA_REQUIRE_POSTGRES=1 NUSKHA_REQUIRE_INTEROP=1 NUSKHA_REQUIRE_OPENSSL=1 NUSKHA_REQUIRE_SYSTEMD_ANALYZE=1 NUSKHA_REQUIRE_PROMTOOL=1
export CGO_ENABLED=1

log "go vet"
go vet ./...
# staticcheck is pinned in go.mod (a tool directive), so CI runs the
# version the tree was last made clean with, from the module cache.
log "staticcheck"
go tool staticcheck ./...
log "go test -race ./..."
go test -race -count=1 -timeout 30m "$@" ./...
log "the README walkthrough (deploy/demo.sh)"
bash deploy/demo.sh
# Needs root (the PostgreSQL nodes run as postgres): under sudo otherwise.
log "the fault tests of the highly available deployment (deploy/faulttest.sh)"
$SUDO env "PATH=$PATH" bash deploy/faulttest.sh

#!/usr/bin/env bash
# scripts/stack.sh — the local orderpipe stack as plain processes (no Docker).
#
#   scripts/stack.sh up      install what is missing, start what is not running (idempotent)
#   scripts/stack.sh down    stop the processes this script started (PostgreSQL and Redis stay up)
#   scripts/stack.sh status  one line per service
#   scripts/stack.sh env     the environment variables that point the binaries (and the tests) at this stack
#   scripts/stack.sh stop-worker  stop the worker the demo started
#
# PostgreSQL and Redis are the machine's own (started or installed from Debian's packages when
# absent). PgBouncer, the SNS/SQS emulator (fauxqs on Node 22) and Mailpit run from .stack/,
# the one git-ignored folder that holds every installed tool, log and pid file. moto's server
# (the AWS emulator the CloudFormation tests deploy into) is the machine's pip package, its log
# and pid under .stack/ like the others. toxiproxy (the TCP fault proxy the failover drill and the
# benchmark's cloud profile put in front of every dependency) is built from the Go module proxy
# into .stack/bin and serves only its API until a tool creates proxies through it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${ORDERPIPE_STATE_DIR:-$ROOT/.stack}
LOGS=$STATE/logs
RUN=$STATE/run
MAILPIT_VERSION=v1.27.11
MOTO_VERSION=5.2.1
TOXIPROXY_VERSION=v2.5.0
# Ports can be moved (to run a second stack beside the first, say).
EMULATOR_PORT=${ORDERPIPE_EMULATOR_PORT:-4566}
PGBOUNCER_PORT=${ORDERPIPE_PGBOUNCER_PORT:-6432}
SMTP_PORT=${ORDERPIPE_SMTP_PORT:-1025}
MAILPIT_HTTP_PORT=${ORDERPIPE_MAILPIT_PORT:-8025}
MOTO_PORT=${ORDERPIPE_MOTO_PORT:-5000}
TOXIPROXY_PORT=${ORDERPIPE_TOXIPROXY_PORT:-8474}

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for NAME LOGFILE CHECK...: poll CHECK for up to 30 s; on failure show the log and fail.
wait_for() {
  local name=$1 logfile=$2; shift 2
  for _ in $(seq 1 150); do
    if "$@"; then log "$name is up"; return 0; fi
    sleep 0.2
  done
  log "$name did not come up; last lines of $logfile:"
  tail -n 40 "$logfile" >&2 || true
  die "$name failed to start"
}

apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  log "installing $* from Debian's packages"
  if [ ! -f "$STATE/.apt-updated" ]; then apt-get update -qq >"$LOGS/apt.log" 2>&1 && touch "$STATE/.apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$LOGS/apt.log" 2>&1 || {
    tail -n 20 "$LOGS/apt.log" >&2; die "apt-get install $* failed"; }
}

# start_bg NAME CMD...: start CMD detached with its output in $LOGS/NAME.log and its pid in $RUN/NAME.pid.
start_bg() {
  local name=$1; shift
  nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

postgres_up() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start \
    || die "PostgreSQL failed to start (see /var/log/postgresql/)"
  wait_for postgresql /dev/null pg_isready -q -h 127.0.0.1 -p 5432
}

redis_up() {
  if port_open 127.0.0.1 6379; then return 0; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile "$LOGS/redis.log" || die "Redis failed to start"
  wait_for redis "$LOGS/redis.log" port_open 127.0.0.1 6379
}

pgbouncer_up() {
  if port_open 127.0.0.1 "$PGBOUNCER_PORT"; then return 0; fi
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
  mkdir -p "$STATE/pgbouncer"
  printf '"postgres" ""\n"root" ""\n' >"$STATE/pgbouncer/userlist.txt"
  # Transaction pooling, as RDS Proxy multiplexes. pgbouncer refuses to run as root, so when
  # started by root it drops to the postgres user after binding (user=). The tests make a
  # database per package (and per engineer, with ORDERPIPE_TEST_DB_SUFFIX): server connections
  # idle 15 s are closed, so the pools of finished runs do not hold PostgreSQL's 100 connections.
  cat >"$STATE/pgbouncer/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $STATE/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
max_client_conn = 2000
server_idle_timeout = 15
server_reset_query =
ignore_startup_parameters = extra_float_digits
admin_users = postgres
stats_users = postgres
$( [ "$(id -u)" = 0 ] && echo "user = postgres" )
EOF
  chmod 644 "$STATE/pgbouncer/"*
  log "starting PgBouncer on :$PGBOUNCER_PORT"
  start_bg pgbouncer "$(command -v pgbouncer || echo /usr/sbin/pgbouncer)" "$STATE/pgbouncer/pgbouncer.ini"
  wait_for pgbouncer "$LOGS/pgbouncer.log" port_open 127.0.0.1 "$PGBOUNCER_PORT"
}

emulator_up() {
  if curl -sf "http://127.0.0.1:$EMULATOR_PORT/health" >/dev/null 2>&1; then return 0; fi
  port_open 127.0.0.1 "$EMULATOR_PORT" && die "port $EMULATOR_PORT is taken by something that is not the emulator"
  local dir=$STATE/emulator
  mkdir -p "$dir"
  # Reinstall only when the pinned versions change.
  if ! cmp -s "$ROOT/tools/emulator/package-lock.json" "$dir/package-lock.json" || [ ! -x "$dir/node_modules/.bin/node" ]; then
    log "installing the SNS/SQS emulator (fauxqs) and Node 22 from npm"
    cp "$ROOT/tools/emulator/package.json" "$ROOT/tools/emulator/package-lock.json" "$ROOT/tools/emulator/.npmrc" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >"$LOGS/npm.log" 2>&1) || {
      tail -n 20 "$LOGS/npm.log" >&2; die "npm ci for the emulator failed"; }
  fi
  log "starting the SNS/SQS emulator on :$EMULATOR_PORT"
  FAUXQS_PORT=$EMULATOR_PORT FAUXQS_LOGGER=false FAUXQS_DEFAULT_REGION=us-east-1 \
    start_bg emulator "$dir/node_modules/.bin/node" "$dir/node_modules/fauxqs/dist/cli.js"
  wait_for emulator "$LOGS/emulator.log" curl -sf "http://127.0.0.1:$EMULATOR_PORT/health" -o /dev/null
}

mailpit_up() {
  if curl -sf "http://127.0.0.1:$MAILPIT_HTTP_PORT/api/v1/info" >/dev/null 2>&1; then return 0; fi
  local bin=$STATE/bin/mailpit
  if [ ! -x "$bin" ] || [ "$(cat "$STATE/bin/mailpit.version" 2>/dev/null)" != "$MAILPIT_VERSION" ]; then
    log "building Mailpit $MAILPIT_VERSION with go install"
    mkdir -p "$STATE/bin"
    GOBIN=$STATE/bin go install "github.com/axllent/mailpit@$MAILPIT_VERSION" >"$LOGS/mailpit-install.log" 2>&1 || {
      tail -n 20 "$LOGS/mailpit-install.log" >&2; die "go install mailpit failed"; }
    echo "$MAILPIT_VERSION" >"$STATE/bin/mailpit.version"
  fi
  mkdir -p "$STATE/mailpit"
  log "starting Mailpit (SMTP :$SMTP_PORT, API :$MAILPIT_HTTP_PORT)"
  start_bg mailpit "$bin" --smtp "127.0.0.1:$SMTP_PORT" --listen "127.0.0.1:$MAILPIT_HTTP_PORT" \
    --database "$STATE/mailpit/mailpit.db" --max 0 --disable-version-check --quiet
  wait_for mailpit "$LOGS/mailpit.log" curl -sf "http://127.0.0.1:$MAILPIT_HTTP_PORT/api/v1/info" -o /dev/null
}

# toxiproxy_up: Shopify's toxiproxy server, its API on :$TOXIPROXY_PORT. `go install` names the
# binary after its package (server); it is kept as toxiproxy-server with a version file, and
# rebuilt only when the pin changes. It logs warnings only: a line per connection would cost
# the benchmark's cloud profile CPU.
toxiproxy_up() {
  if curl -sf "http://127.0.0.1:$TOXIPROXY_PORT/version" >/dev/null 2>&1; then return 0; fi
  port_open 127.0.0.1 "$TOXIPROXY_PORT" && die "port $TOXIPROXY_PORT is taken by something that is not toxiproxy (set ORDERPIPE_TOXIPROXY_PORT)"
  local bin=$STATE/bin/toxiproxy-server
  if [ ! -x "$bin" ] || [ "$(cat "$bin.version" 2>/dev/null)" != "$TOXIPROXY_VERSION" ]; then
    log "building toxiproxy $TOXIPROXY_VERSION with go install"
    mkdir -p "$STATE/bin"
    local tmp; tmp=$(mktemp -d)
    GOBIN=$tmp go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >"$LOGS/toxiproxy-install.log" 2>&1 || {
      rm -rf "$tmp"; tail -n 20 "$LOGS/toxiproxy-install.log" >&2; die "go install toxiproxy failed"; }
    mv "$tmp/server" "$bin" && rm -rf "$tmp"
    echo "$TOXIPROXY_VERSION" >"$bin.version"
  fi
  log "starting toxiproxy (API :$TOXIPROXY_PORT)"
  LOG_LEVEL=warn start_bg toxiproxy "$bin" -host 127.0.0.1 -port "$TOXIPROXY_PORT"
  wait_for toxiproxy "$LOGS/toxiproxy.log" curl -sf "http://127.0.0.1:$TOXIPROXY_PORT/version" -o /dev/null
}

# moto_up: moto's server, an AWS emulator with CloudFormation (deploy/'s tests deploy the
# pipeline stack into it). It comes from pip with its server and CloudFormation extras; this
# installs them only when they are missing.
moto_up() {
  if curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" -o /dev/null 2>&1; then return 0; fi
  port_open 127.0.0.1 "$MOTO_PORT" && die "port $MOTO_PORT is taken by something that is not moto (set ORDERPIPE_MOTO_PORT)"
  if ! command -v moto_server >/dev/null || ! python3 -c 'import moto.cloudformation, cfnlint, flask' 2>/dev/null; then
    log "installing moto $MOTO_VERSION (server, CloudFormation) with pip"
    python3 -m pip install --quiet "moto[server,cloudformation]==$MOTO_VERSION" >"$LOGS/moto-install.log" 2>&1 || {
      tail -n 20 "$LOGS/moto-install.log" >&2; die "pip install moto failed"; }
  fi
  log "starting moto's server on :$MOTO_PORT"
  start_bg moto "$(command -v moto_server)" -H 127.0.0.1 -p "$MOTO_PORT"
  wait_for moto "$LOGS/moto.log" curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" -o /dev/null
}

# promtool_up: promtool, which deploy/'s tests run on the Prometheus alert rules
# (deploy/prometheus/), from Debian's prometheus package, installed only when missing and
# without its recommends. It is a command, not a service: the package's server is not started.
promtool_up() {
  command -v promtool >/dev/null && return 0
  apt_install --no-install-recommends prometheus
  command -v promtool >/dev/null || die "the prometheus package installed no promtool"
}

# databases: the application database, created once; tests make their own.
databases_up() {
  local db=${ORDERPIPE_DB:-orderpipe}
  if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
    log "creating database $db"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db" >/dev/null
  fi
}

stop_one() {
  local name=$1 pidfile=$RUN/$1.pid
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

status_line() {
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then printf '%-11s up\n' "$name"; else printf '%-11s down\n' "$name"; fi
}

cmd=${1:-up}
mkdir -p "$LOGS" "$RUN"
case "$cmd" in
  up)
    postgres_up; redis_up; pgbouncer_up; emulator_up; mailpit_up; toxiproxy_up; moto_up; promtool_up; databases_up
    log "stack ready (logs in $LOGS)" ;;
  down)
    for s in worker moto toxiproxy mailpit emulator pgbouncer; do stop_one "$s"; done ;;
  stop-worker)
    stop_one worker ;;
  status)
    status_line postgresql pg_isready -q -h 127.0.0.1 -p 5432
    status_line redis port_open 127.0.0.1 6379
    status_line pgbouncer port_open 127.0.0.1 "$PGBOUNCER_PORT"
    status_line emulator curl -sf "http://127.0.0.1:$EMULATOR_PORT/health"
    status_line mailpit curl -sf "http://127.0.0.1:$MAILPIT_HTTP_PORT/api/v1/info"
    status_line toxiproxy curl -sf "http://127.0.0.1:$TOXIPROXY_PORT/version"
    status_line moto curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" ;;
  env)
    cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$EMULATOR_PORT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export DATABASE_URL=postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/${ORDERPIPE_DB:-orderpipe}?sslmode=disable
export ADMIN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export REDIS_URL=redis://127.0.0.1:6379/0
export SMTP_ADDR=127.0.0.1:$SMTP_PORT
export MAILPIT_URL=http://127.0.0.1:$MAILPIT_HTTP_PORT
export MOTO_URL=http://127.0.0.1:$MOTO_PORT
export TOXIPROXY_URL=http://127.0.0.1:$TOXIPROXY_PORT
EOF
    ;;
  *) die "usage: $0 up|down|status|env|stop-worker" ;;
esac

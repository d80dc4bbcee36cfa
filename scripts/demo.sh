#!/usr/bin/env bash
# scripts/demo.sh — the whole pipeline on the local stack: provision, migrate,
# start a worker, publish sample orders, wait until every one is handled,
# report. Exits 0 only if every order went through all three handlers, every
# confirmation reached Mailpit and nothing was dead-lettered.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${DEMO_ORDERS:-200}
STATE=${ORDERPIPE_STATE_DIR:-$ROOT/.stack}

scripts/stack.sh up
eval "$(scripts/stack.sh env)"
bin/orderctl provision >/dev/null
bin/orderctl migrate
bin/orderctl reset
curl -sf -X DELETE "$MAILPIT_URL/api/v1/messages" >/dev/null

scripts/stack.sh stop-worker
bin/worker >"$STATE/logs/worker.log" 2>&1 &
echo $! >"$STATE/run/worker.pid"
trap 'scripts/stack.sh stop-worker' EXIT

bin/orderctl publish --sample "$N"
status=0
bin/orderctl wait --orders "$N" --timeout "${DEMO_TIMEOUT:-3m}" || status=$?
bin/orderctl report --json

mails=$(curl -sf "$MAILPIT_URL/api/v1/messages?limit=1" | grep -o '"messages_count":[0-9]*' | cut -d: -f2)
echo "Mailpit holds ${mails:-0} emails (want $N confirmations)"
if [ "${mails:-0}" != "$N" ]; then status=1; fi
if [ "$status" != 0 ]; then
  echo "demo FAILED; last worker log lines:" >&2
  tail -n 20 "$STATE/logs/worker.log" >&2
  exit 1
fi
echo "demo OK: $N orders billed, stock decided, confirmed by email; nothing dead-lettered or pending"

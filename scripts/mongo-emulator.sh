#!/usr/bin/env bash
# The MongoDB wire-protocol emulator (PyPI `nx-27017`, MongoDB 7.0 compatible, on
# SQLite) for the tests, on 127.0.0.1:${MONGODB_PORT:-27017}. No MongoDB server package
# is reachable from these machines; MONGODB_URL points the tests at a real one instead.
#   scripts/mongo-emulator.sh start | stop
set -euo pipefail
DIR=${CONNECTD_SERVICES_DIR:-/tmp/connectd-services}/mongo
PORT=${MONGODB_PORT:-27017}
# `memory` (default) or a directory: file-backed data survives a restart (outage tests).
DATA=${MONGODB_DATA_DIR:-memory}
RUN=$DIR/run-$PORT

up() { python3 - "$PORT" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(0.5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1]))); sys.exit(0)
except OSError:
    sys.exit(1)
PY
}

start() {
  mkdir -p "$DIR"
  if [ ! -x "$DIR/venv/bin/nx-27017" ]; then
    echo "installing nx-27017 (MongoDB emulator) from PyPI"
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q nx-27017
  fi
  if up; then return 0; fi
  mkdir -p "$RUN"
  setsid "$DIR/venv/bin/nx-27017" --data-dir "$DATA" --host 127.0.0.1 -p "$PORT" \
    --log-file "$RUN/nx.log" --pid-file "$RUN/nx.pid" </dev/null >"$RUN/stdout.log" 2>&1 &
  for _ in $(seq 1 100); do
    if up; then return 0; fi
    sleep 0.2
  done
  echo "the MongoDB emulator did not start:" >&2
  tail -20 "$RUN/stdout.log" "$RUN/nx.log" >&2 || true
  exit 1
}

stop() {
  if [ -f "$RUN/nx.pid" ]; then kill "$(cat "$RUN/nx.pid")" 2>/dev/null || true; fi
  for _ in $(seq 1 50); do
    if ! up; then return 0; fi
    sleep 0.2
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

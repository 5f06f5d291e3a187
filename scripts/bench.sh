#!/usr/bin/env bash
# Runs every benchmark and prints one table: for each path connectd's figure, the
# yardstick's figure measured in the same run, the ratio and the target. Every bench
# checks its output against its yardstick's before it reports.
#
#   scripts/bench.sh            release build, full sizes (about 20 minutes after the build)
#   scripts/bench.sh --quick    debug build, small inputs: outputs checked, targets not
#                               judged (the test script runs this, so the benches cannot rot)
#   scripts/bench.sh file_window mysql_sink    only these
#
# Sizes per bench: EVENTS, ROWS, RECORDS, RUNS, PLUGIN_RECORDS, PLUGIN_RUNS (see each
# bench's header in runtime/benches/). Services: MariaDB (scripts/mariadb.sh) or
# MYSQL_URL; the MongoDB emulator (scripts/mongo-emulator.sh) or MONGODB_URL; the CQL
# emulator in-process or CASSANDRA_URL; a Kafka broker (scripts/kafka.sh) or
# KAFKA_BOOTSTRAP; the WASM plugins (scripts/build-plugins.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
benches=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) benches+=("$arg") ;;
  esac
done
[ ${#benches[@]} -gt 0 ] || benches=(file_window mysql_sink mongodb_sink cassandra_sink kafka_eos scale_out wasm_filter state_scale)

needs() { printf '%s\n' "${benches[@]}" | grep -qx "$1"; }
if needs mysql_sink; then
  scripts/mariadb.sh start
  export MYSQL_URL=${MYSQL_URL:-mysql://root@127.0.0.1:${MYSQL_PORT:-3306}}
fi
if needs mongodb_sink && [ -z "${MONGODB_URL:-}" ]; then scripts/mongo-emulator.sh start; fi
if { needs kafka_eos || needs scale_out; } && [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  # A broker of the bench's own on a port of its own, stopped at the end.
  export KAFKA_PORT=${BENCH_KAFKA_PORT:-19192}
  scripts/kafka.sh start
  export KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
  trap 'scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
fi
if needs wasm_filter; then scripts/build-plugins.sh >/dev/null; fi

table=$(mktemp)
export BENCH_TABLE=$table
failed=()
for bench in "${benches[@]}"; do
  echo "== $bench"
  if [ "$quick" = 1 ]; then
    # The bench binaries built as tests (debug): `cargo test` runs a harness-less
    # bench's main.
    BENCH_QUICK=1 cargo test --locked -p connectd-runtime --bench "$bench" || failed+=("$bench")
  else
    cargo bench --locked -p connectd-runtime --bench "$bench" || failed+=("$bench")
  fi
done

echo
echo "== results$([ "$quick" = 1 ] && echo ' (quick run: small inputs, debug build; the figures say nothing about speed)')"
{
  printf 'path\tconnectd\tyardstick (same run)\tratio\ttarget\tverdict\toutput check\n'
  cat "$table"
} | if command -v column >/dev/null; then column -t -s $'\t' -o ' | '; else tr '\t' '|'; fi
missed=$(cut -f6 "$table" | grep -c 'NOT MET' || true)
rm -f "$table"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
# A full run fails when a target is missed (the table says which).
if [ "$missed" -gt 0 ]; then
  echo "$missed target(s) not met" >&2
  exit 1
fi

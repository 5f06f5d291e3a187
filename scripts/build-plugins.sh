#!/usr/bin/env bash
# Builds the example WASM plugins and the sandbox-test guests (target wasm32-wasip2).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
for ws in examples/plugins transforms/tests/guests; do
  cargo build --release --target wasm32-wasip2 --manifest-path "$ws/Cargo.toml" --target-dir "$ws/target"
done

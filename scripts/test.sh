#!/usr/bin/env bash
# The one test command: sets up what the tests need on a fresh machine, then checks
# formatting, lints and runs the whole test suite. Idempotent; honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
rustc --version
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== format"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

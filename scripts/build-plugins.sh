#!/usr/bin/env bash
# Builds the example WASM plugins (Rust, Python, JavaScript) and the sandbox-test guests.
# Rust: target wasm32-wasip2. Python: componentize-py (PyPI, pinned below, in a venv).
# JavaScript: componentize-js (npm, pinned in examples/plugins/js/package-lock.json).
# Every component lands in examples/plugins/target/wasm32-wasip2/release/.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
for ws in examples/plugins transforms/tests/guests; do
  cargo build --release --target wasm32-wasip2 --manifest-path "$ws/Cargo.toml" --target-dir "$ws/target"
done

OUT=examples/plugins/target/wasm32-wasip2/release
WIT=plugins-sdk/wit
COMPONENTIZE_PY_VERSION=0.25.1

# Whether $1 is missing or older than any of the other files given.
stale() {
  local out=$1; shift
  [ -f "$out" ] || return 0
  [ -n "$(find "$@" -newer "$out" -print -quit)" ]
}

VENV=examples/plugins/target/componentize-py-$COMPONENTIZE_PY_VERSION
for app in examples/plugins/python/*/app.py; do
  dir=$(dirname "$app"); name=$(basename "$dir")
  stale "$OUT/${name}_py.wasm" "$dir" "$WIT" || continue
  if [ ! -x "$VENV/bin/componentize-py" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "componentize-py==$COMPONENTIZE_PY_VERSION"
  fi
  echo "building the Python plugin $name"
  (cd "$dir" && "$OLDPWD/$VENV/bin/componentize-py" -d "$OLDPWD/$WIT" -w transform \
    componentize app -o "$OLDPWD/$OUT/${name}_py.wasm")
done

for src in examples/plugins/js/*/*.js; do
  name=$(basename "$src" .js | tr - _)
  stale "$OUT/${name}_js.wasm" "$src" "$WIT" || continue
  if [ ! -x examples/plugins/js/node_modules/.bin/componentize-js ]; then
    (cd examples/plugins/js && npm ci --no-audit --no-fund)
  fi
  echo "building the JavaScript plugin $name"
  # Relative paths: componentize-js reads its inputs from inside its own sandbox.
  examples/plugins/js/node_modules/.bin/componentize-js "$src" --wit "$WIT" -n transform \
    -d http -d fetch-event -o "$OUT/${name}_js.wasm"
done

#!/usr/bin/env bash
# Installs Debian's `prometheus` server for the scrape test (the test starts its own
# instance on a free port). Idempotent.
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus from Debian packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a system instance where it can; the tests run their own.
  (service prometheus stop || pkill -x prometheus || true) >/dev/null 2>&1
fi

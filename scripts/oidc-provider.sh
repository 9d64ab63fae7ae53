#!/usr/bin/env bash
# Installs the test suite's real OpenID provider (npm package oidc-provider, pinned by
# tests/oidc/package-lock.json) into tests/oidc/node_modules. Idempotent: it runs `npm ci`
# only when the lock file changed since the last install, so after the first install the
# tests start the provider offline. Run by `make test`, and by the tests' fixture itself.
set -euo pipefail
cd "$(dirname "$0")/../tests/oidc"

stamp=node_modules/.vitaltrail-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: scripts/vendor-assets.sh (run by make) installs nodejs and npm" >&2
  exit 1
fi
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
echo "$want" > "$stamp"

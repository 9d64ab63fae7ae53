#!/usr/bin/env bash
# Vendors the browser assets the web app serves (Swagger UI for /docs, uPlot for the charts) from
# the npm registry into the Python package, so no page loads anything from a CDN. Versions are
# pinned by package-lock.json; each library's licence travels with it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "npm is missing (run as root, or: sudo apt-get install nodejs npm)" >&2
    exit 1
  fi
  echo "installing Debian packages: nodejs npm"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

vendor=dashboards/static/vendor
rm -rf "$vendor"
mkdir -p "$vendor/swagger-ui"
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
  cp "node_modules/swagger-ui-dist/$f" "$vendor/swagger-ui/"
done
mkdir -p "$vendor/uplot"
for f in dist/uPlot.esm.js dist/uPlot.min.css LICENSE; do
  cp "node_modules/uplot/$f" "$vendor/uplot/"
done

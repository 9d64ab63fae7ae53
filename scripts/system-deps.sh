#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when they are missing:
# mosquitto (real MQTT broker for integration tests), chromium (page tests via Playwright) and
# postgresql (the shared-ledger storage tests start their own cluster with its initdb) and
# influxdb (1.x: the store tests start their own influxd with vitaltrail/influxdb.conf).
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || need+=(influxdb)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

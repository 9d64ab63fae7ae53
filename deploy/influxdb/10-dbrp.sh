#!/bin/bash
# InfluxDB 2 init script: map the 1.x database "vitaltrail" (what vitaltrail's store writes to
# through the 1.x-compatible /write and /query) onto the bucket the setup created.
set -euo pipefail
influx v1 dbrp create --db vitaltrail --rp autogen --default \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" --org "${DOCKER_INFLUXDB_INIT_ORG}"

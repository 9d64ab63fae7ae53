#!/bin/bash
# InfluxDB 2 init script: the two retention policies of vitaltrail's store (ingest/influx_store.py),
# which it uses through the 1.x-compatible /write and /query, as two buckets mapped by DBRP:
#   vitaltrail.raw         -> the bucket the setup created (raw samples; the default policy),
#                             retention = the store's raw window (14 days) + 1 hour of slack
#   vitaltrail.aggregates  -> bucket "vitaltrail-aggregates" (1-minute aggregates), kept for good
# Keep RAW_RETENTION in step with VITALTRAIL_STORE_RAW_RETENTION_DAYS (days x 24 + 1 hours).
set -euo pipefail
RAW_RETENTION="${VITALTRAIL_INFLUX_RAW_RETENTION:-337h}"
ORG="${DOCKER_INFLUXDB_INIT_ORG}"
influx bucket update --id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" --retention "${RAW_RETENTION}"
AGGREGATES_ID="$(influx bucket create --name vitaltrail-aggregates --org "${ORG}" --retention 0 \
  --hide-headers | awk '{print $1}')"
influx v1 dbrp create --db vitaltrail --rp raw --default \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" --org "${ORG}"
influx v1 dbrp create --db vitaltrail --rp aggregates \
  --bucket-id "${AGGREGATES_ID}" --org "${ORG}"

# vitaltrail: one image for the ingestors, the API, the witness, the simulator and setup.

# Browser assets (Swagger UI for /docs) from the npm registry, pinned by package-lock.json.
FROM node:20-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/vendor-assets.sh scripts/
RUN bash scripts/vendor-assets.sh

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY devices devices
COPY simulator simulator
COPY ingest ingest
COPY ledger ledger
COPY access access
COPY dashboards dashboards
COPY --from=assets /src/dashboards/static/vendor dashboards/static/vendor
COPY vitaltrail vitaltrail
COPY fhirserver fhirserver
RUN pip install . && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin vitaltrail
USER 10001
ENTRYPOINT ["vitaltrail"]
CMD ["--help"]

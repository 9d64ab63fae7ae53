# vitaltrail: one image for the ingestors, the API, the witness, the simulator and setup.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY devices devices
COPY simulator simulator
COPY ingest ingest
COPY ledger ledger
COPY dashboards dashboards
COPY vitaltrail vitaltrail
RUN pip install . && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin vitaltrail
USER 10001
ENTRYPOINT ["vitaltrail"]
CMD ["--help"]

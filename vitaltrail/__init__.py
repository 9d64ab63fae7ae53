"""The composition root: the `vitaltrail` console script wiring devices, ingest, ledger and dashboards."""

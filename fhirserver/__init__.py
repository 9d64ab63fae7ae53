"""vitaltrail's readings as FHIR R4: resources, search, subscriptions - no HTTP.

FHIR is a vocabulary of its own (resource shapes, profiles, search parameters, paging,
subscriptions) over data the ledger and the store already hold, so it lives in its own
package rather than in the web layer or in ``access``: it sits between them in the flow
(ledger/store -> access -> fhirserver -> dashboards). Routes in ``dashboards`` call it with
bytes and ids already read and allowed; nothing here checks a token, and the one database it
opens is its own derived index of the ledger (``index``).

Resources are plain JSON dicts (as ``access.fhir`` builds Consent and AuditEvent), validated in
the tests with fhir.resources' R4B models and the profiles' FHIRPath invariants
(tests/fhir_validation.py). Modules: ``vital_signs`` (the LOINC/UCUM profile table),
``observations`` (one Observation per vital of a signed reading, and their stable ids),
``provenance`` (the device's COSE signature and the ledger's proof bundle, for offline
verification), ``directory`` (Patient, Device and references to them), ``outcome``
(OperationOutcome); and for the API: ``index`` (which Observations the ledger holds, whose,
of what, when), ``ledger_reads`` (those Observations made from their ledger entries),
``search`` (FHIR search parameters), ``paging`` (cursors and searchset Bundles),
``capability`` (what is implemented: the routes and the CapabilityStatement), ``media``
(content negotiation). The mapping and the API are described in docs/formats.md, "FHIR
mapping" and "The FHIR API".
"""

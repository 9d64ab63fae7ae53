"""Who may read what: token checks, roles and SMART scopes, patient consent, the access trail.

Knows the ledger, not HTTP or MQTT: the web layer hands it a bearer token and gets back a
typed ``Principal``, or one ``TokenError`` whose reason code it answers with a 401 (403 for
scopes) and ``WWW-Authenticate``. Modules: ``scopes`` (SMART v2 scopes as data), ``tokens``
(the RFC 9068 check), ``jwks`` (discovery, JWK sets), ``issuer`` (the embedded issuer),
``users`` and ``apps`` (who may sign in), ``care_teams`` (whom a clinician reads), ``errors``
(the one error tree); patient consent and the record of who read: ``patient_keys``,
``consent``, ``consent_state``, ``consent_store``, ``trail`` and ``journal`` (what becomes
ledger entries, durably, before data leaves), ``directory`` and ``directory_changes`` (every
change to users and care teams, journaled before it takes effect), ``directory_history`` and
``compliance`` (every recorded access against the consents, roles and care teams in force at
its position in the log), ``fhir`` (Consent and AuditEvent exports).
"""

from access.errors import (
    AccessError,
    ProviderError,
    Refusals,
    ScopeError,
    SignInError,
    TokenError,
    TokenRequestError,
)
from access.scopes import Scope, ScopeSet, permits
from access.tokens import Principal, TokenVerifier, TrustedIssuer

__all__ = [
    "AccessError",
    "Principal",
    "ProviderError",
    "Refusals",
    "Scope",
    "ScopeError",
    "ScopeSet",
    "SignInError",
    "TokenError",
    "TokenRequestError",
    "TokenVerifier",
    "TrustedIssuer",
    "permits",
]

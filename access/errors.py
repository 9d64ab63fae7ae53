"""The access package's errors, one tree, each refusal with a reason code::

    AccessError
     ├── ScopeError          a resource scope breaks the SMART grammar (scopes.py)
     ├── TokenError          a bearer token refused: the HTTP layer answers 401 (403 for scope)
     │   └── UserDisabled    a valid token of a user the issuer's directory has disabled since
     ├── ProviderError       an issuer's discovery document or JWK set could not be had
     ├── TokenRequestError   the embedded issuer's token endpoint refused (RFC 6749 §5.2)
     ├── SignInError         a password sign-in refused
     └── AccessRecordError   a consent, patient key, access or directory record cannot be accepted
         ├── PatientKeyError      bytes that are not a patient key statement (patient_keys)
         ├── ConsentError         bytes that are not a consent statement (consent)
         ├── AccessEventError     bytes that are not an access event (trail)
         ├── DirectoryChangeError bytes that are not a directory change (directory_changes)
         ├── ConsentRefused       a well-formed statement the store refuses, with a reason code
         └── JournalError         the journal could not commit: serve nothing (journal)
             └── JournalConflict  the key is recorded with other bytes

Each decoder of outside bytes raises only its own type (:func:`devices.boundary.decoder`).

The reason codes are stable strings, for counters, logs and tests; the text beside them is for
people and never holds a token, a password or a patient identifier.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Literal

TokenReason = Literal[
    "missing",  # no token where one is needed
    "malformed",  # not a compact JWS of JSON objects, or a claim of the wrong type
    "too_large",  # over the size bound before any parsing
    "alg_not_allowed",  # none, HS*, or any alg outside the allow-list, or not the key's alg
    "wrong_type",  # typ is not at+jwt (application/at+jwt) where the issuer must set it
    "wrong_issuer",  # iss is not a trusted issuer
    "unknown_key",  # no key in the issuer's JWK set has that kid (after one bounded refresh)
    "keys_unavailable",  # the issuer's JWK set could not be fetched
    "bad_signature",
    "expired",
    "not_yet_valid",  # nbf or iat in the future beyond the leeway
    "wrong_audience",
    "missing_claim",  # sub, client_id, scope, jti, iat or exp absent
    "bad_scope",  # a resource scope in the token breaks the SMART grammar
    "user_disabled",  # a valid token of a user disabled since it was issued (disabled means now)
    "app_disabled",  # a valid token of an app disabled since it was issued
    "insufficient_scope",  # valid token, scopes do not delegate the request (HTTP 403)
]

# RFC 6750 §3.1 error codes the HTTP layer puts in WWW-Authenticate
_RFC6750 = {"missing": None, "insufficient_scope": "insufficient_scope"}


class AccessError(Exception):
    """Base of every error the access package raises."""


class ScopeError(AccessError, ValueError):
    """A scope string that looks like a SMART resource scope but breaks its grammar."""


class TokenError(AccessError):
    """A bearer token refused, with a reason code and a description safe to send back."""

    def __init__(self, reason: TokenReason, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason: TokenReason = reason
        self.description = description

    @property
    def status(self) -> int:
        """The HTTP status this refusal calls for (RFC 6750 §3.1)."""
        return 403 if self.reason == "insufficient_scope" else 401

    @property
    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` value: no error code for a request without a token."""
        error = _RFC6750.get(self.reason, "invalid_token")
        if error is None:
            return "Bearer"
        safe = "".join(c for c in self.description if " " <= c <= "~" and c not in '\\"')
        return f'Bearer error="{error}", error_description="{safe}"'


class UserDisabled(TokenError):
    """A token that passed every check, of a user (or an app, ``kind="app"``) the issuer's
    directory has disabled since: refused from the next request, not when the token expires.
    It names the caller (subject, client, roles, token id) so the refusal can be recorded in
    the access trail."""

    def __init__(
        self,
        subject: str,
        client_id: str,
        roles: frozenset[str],
        token_id: str,
        kind: Literal["user", "app"] = "user",
    ) -> None:
        if kind == "app":
            super().__init__("app_disabled", "this app is disabled")
        else:
            super().__init__("user_disabled", "this account is disabled")
        self.kind = kind
        self.subject = subject
        self.client_id = client_id
        self.roles = roles
        self.token_id = token_id


class ProviderError(AccessError):
    """An issuer's discovery document or JWK set could not be fetched or was not usable."""


TokenRequestErrorCode = Literal[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "invalid_scope",
    "unauthorized_client",
    "unsupported_grant_type",
]


class TokenRequestError(AccessError):
    """The token endpoint's refusal: an RFC 6749 §5.2 ``error`` plus our finer reason code."""

    def __init__(self, error: TokenRequestErrorCode, reason: str, description: str) -> None:
        super().__init__(f"{error} ({reason}): {description}")
        self.error: TokenRequestErrorCode = error
        self.reason = reason
        self.description = description

    @property
    def status(self) -> int:
        return 401 if self.error == "invalid_client" else 400

    def body(self) -> dict[str, str]:
        """The JSON error response (RFC 6749 §5.2)."""
        return {"error": self.error, "error_description": self.description}


SignInReason = Literal["invalid_credentials", "rate_limited", "disabled"]


class SignInError(AccessError):
    """A password sign-in refused. ``invalid_credentials`` covers both an unknown user and a
    wrong password, so the answer does not tell which names exist."""

    def __init__(self, reason: SignInReason, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason: SignInReason = reason
        self.description = description


class Refusals:
    """Refusals counted by reason code: the HTTP layer exports them as metrics."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1

    def __getitem__(self, reason: str) -> int:
        with self._lock:
            return self._counts[reason]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class AccessRecordError(AccessError):
    """A consent, patient key or access record that cannot be accepted."""


class PatientKeyError(AccessRecordError):
    """Bytes that are not a well-formed, deterministically encoded patient key statement."""


class ConsentError(AccessRecordError):
    """Bytes that are not a well-formed, deterministically encoded consent statement."""


class AccessEventError(AccessRecordError):
    """Bytes that are not a well-formed, deterministically encoded access event."""


class DirectoryChangeError(AccessRecordError):
    """Bytes that are not a well-formed, deterministically encoded directory change."""


class ConsentRefused(AccessRecordError):
    """A statement the consent store does not record; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class JournalError(AccessRecordError):
    """The journal did not commit the record: the caller must not serve the data (fail closed)."""


class JournalConflict(JournalError):
    """The record's key is already taken by other bytes (a reused consent sequence number)."""

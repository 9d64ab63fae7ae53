"""An issuer's published keys: OpenID discovery, and its JWK set held in a bounded cache.

The cache refreshes when a token names a key it does not hold (the issuer rotated its keys),
but at most once per ``min_refresh_s``, so a stream of tokens with made-up ``kid`` values
cannot turn into a stream of requests to the issuer. Every fetch has a timeout and a size
bound; a failed fetch is a ``ProviderError`` here and a ``keys_unavailable`` refusal in the
token check.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx2
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key

from access.errors import ProviderError, TokenError

log = logging.getLogger("vitaltrail.access")

FetchJson = Callable[[str], Mapping[str, Any]]
KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class KeySource(Protocol):
    """Where a token check finds the issuer's public key named by a token's ``kid``."""

    def key(self, kid: str | None) -> Key: ...


class HttpJson:
    """GET a JSON object, with a timeout and a bound on the body's size; HTTPS checked against
    the system's CAs, or against ``ca_file`` alone (a deployment's private CA)."""

    def __init__(
        self, *, timeout_s: float = 5.0, max_bytes: int = 256 * 1024, ca_file: Path | None = None
    ) -> None:
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=ca_file)
        self._client = httpx2.Client(timeout=timeout_s, follow_redirects=False, verify=verify)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    def __call__(self, url: str) -> Mapping[str, Any]:
        """The JSON object at ``url``; ``timeout_s`` bounds each wait and the whole body, so a
        server dripping bytes cannot hold a caller longer."""
        body = bytearray()
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._client.stream("GET", url, headers={"Accept": "application/json"}) as r:
                if r.status_code != 200:
                    raise ProviderError(f"{url} answered HTTP {r.status_code}")
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ProviderError(f"{url} sent more than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise ProviderError(f"{url} took over {self.timeout_s} s")
        except httpx2.HTTPError as exc:
            raise ProviderError(f"{url}: {type(exc).__name__}") from exc
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ProviderError(f"{url} sent no JSON") from exc
        if not isinstance(doc, dict):
            raise ProviderError(f"{url} sent JSON that is not an object")
        return doc

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class ProviderMetadata:
    """What the token check needs from an OpenID provider's discovery document."""

    issuer: str
    jwks_uri: str
    token_endpoint: str | None = None


def discover(issuer: str, fetch: FetchJson, url: str | None = None) -> ProviderMetadata:
    """Read ``<issuer>/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 §4),
    or the same document at ``url`` (a provider reached over a private network by another
    name than its public one).

    The document's ``issuer`` must be exactly the one asked for (§4.3), or a provider could
    speak for another."""
    doc = fetch(url or issuer.rstrip("/") + "/.well-known/openid-configuration")
    if doc.get("issuer") != issuer:
        raise ProviderError(
            f"discovery document names issuer {doc.get('issuer')!r}, expected {issuer!r}"
        )
    jwks_uri = doc.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
        raise ProviderError(f"discovery document of {issuer} has no usable jwks_uri")
    token_endpoint = doc.get("token_endpoint")
    return ProviderMetadata(
        issuer, jwks_uri, token_endpoint if isinstance(token_endpoint, str) else None
    )


def parse_jwk_set(doc: Mapping[str, Any], *, max_keys: int = 64) -> dict[str | None, Key]:
    """The signing keys of a JWK set, by ``kid``; keys for encryption or of unknown types are
    left out, as RFC 7517 §5 asks of keys a reader does not understand."""
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise ProviderError("a JWK set must be an object with a 'keys' list")
    if len(keys) > max_keys:
        raise ProviderError(f"a JWK set of {len(keys)} keys is over the bound of {max_keys}")
    found: dict[str | None, Key] = {}
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kty") not in KEY_TYPES:
            continue
        if jwk.get("use", "sig") != "sig" or "d" in jwk:  # a private key is never published
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            found[kid] = JWKRegistry.import_key(dict(jwk))
        except (JoseError, ValueError, TypeError) as exc:
            log.debug("skipped an unreadable key %r in a JWK set: %s", kid, exc)
    return found


def pick_key(keys: Mapping[str | None, Key], kid: str | None) -> Key | None:
    """The key a token names; a token without ``kid`` only when the set holds one key."""
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class StaticKeys:
    """A fixed JWK set: the embedded issuer's own keys, or keys configured by hand."""

    def __init__(self, jwk_set: Mapping[str, Any]) -> None:
        self._keys = parse_jwk_set(jwk_set)

    def key(self, kid: str | None) -> Key:
        found = pick_key(self._keys, kid)
        if found is None:
            raise TokenError("unknown_key", "the token names a key this issuer does not have")
        return found


class JwkSetCache:
    """An issuer's JWK set fetched from ``jwks_uri``: kept ``max_age_s``, refreshed early when
    a token names an unknown ``kid``, but never more than once per ``min_refresh_s``.

    The fetch runs outside the lock: while one request refreshes the set, requests naming a
    key already held are served at once; those that need the new set wait for that one fetch
    (at most ``wait_s``) instead of starting their own."""

    def __init__(
        self,
        jwks_uri: str,
        fetch: FetchJson,
        *,
        max_age_s: float = 3600.0,
        min_refresh_s: float = 30.0,
        max_keys: int = 64,
        wait_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_uri = jwks_uri
        self._fetch = fetch
        self.max_age_s = max_age_s
        self.min_refresh_s = min_refresh_s
        self.max_keys = max_keys
        self.wait_s = wait_s
        self._clock = clock
        self._keys: dict[str | None, Key] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._fetching = False
        self._changed = threading.Condition()
        self.fetches = 0

    def key(self, kid: str | None) -> Key:
        now = self._clock()
        mine = False
        with self._changed:
            found = self._find(kid, now)
            if found is None and self._fetching:
                self._changed.wait_for(lambda: not self._fetching, timeout=self.wait_s)
                found = self._find(kid, now)
            elif found is None and (
                self._tried_at is None or now - self._tried_at >= self.min_refresh_s
            ):
                self._fetching, self._tried_at, mine = True, now, True
                self.fetches += 1
        if mine:
            keys = self._fetch_keys()
            with self._changed:
                if keys is not None:
                    self._keys, self._fetched_at = keys, now
                self._fetching = False
                self._changed.notify_all()
                found = self._find(kid, now)
        if found is not None:
            return found
        with self._changed:
            if self._stale(now):
                raise TokenError("keys_unavailable", "the token's issuer keys cannot be fetched")
        raise TokenError("unknown_key", "the token names a key its issuer does not publish")

    def _find(self, kid: str | None, now: float) -> Key | None:
        return None if self._stale(now) else pick_key(self._keys, kid)

    def _stale(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at > self.max_age_s

    def _fetch_keys(self) -> dict[str | None, Key] | None:
        """The JWK set now published, or None when it cannot be had: keys already held then
        serve until they grow stale, and are refused after (fail closed)."""
        try:
            keys = parse_jwk_set(self._fetch(self.jwks_uri), max_keys=self.max_keys)
        except ProviderError as exc:
            log.warning("could not refresh the JWK set at %s: %s", self.jwks_uri, exc)
            return None
        log.info("fetched %d signing keys from %s", len(keys), self.jwks_uri)
        return keys

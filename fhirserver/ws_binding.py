"""Websocket binding tokens: how a websocket proves whose subscriptions it may receive.

A browser's WebSocket cannot send an ``Authorization`` header, so the Backport IG has the
client call ``$get-ws-binding-token`` over REST (with its bearer token) and send
``bind-with-token <token>`` on the socket. The token is a random secret, short-lived
(``ttl_s``), usable until it expires (a client may bind several sockets, or bind again), and
names the owner and the subscriptions it binds. Only its SHA-256 is kept, in memory, at most
``max_tokens`` (expired ones go first): a token does not survive a restart, and asking for
more than the bound is refused rather than growing memory.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    owner: str  # the owner key (fhirserver.subscription_store.owner_key)
    subscriptions: tuple[str, ...]
    expires_ms: int


class TooManyTokens(Exception):
    """Every slot for a binding token is taken by one that has not expired."""


class BindingTokens:
    def __init__(
        self, ttl_s: float = 300.0, max_tokens: int = 1000, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl_s = ttl_s
        self.max_tokens = max_tokens
        self._clock = clock
        self._grants: dict[bytes, Grant] = {}
        self._lock = threading.Lock()

    def issue(self, owner: str, subscriptions: tuple[str, ...]) -> tuple[str, Grant]:
        """A new token for ``subscriptions`` of ``owner``; :class:`TooManyTokens` past the bound."""
        token = secrets.token_urlsafe(32)
        now_ms = int(self._clock() * 1000)
        grant = Grant(owner, subscriptions, now_ms + int(self.ttl_s * 1000))
        with self._lock:
            self._forget_expired(now_ms)
            if len(self._grants) >= self.max_tokens:
                raise TooManyTokens("too many websocket binding tokens are outstanding")
            self._grants[_digest(token)] = grant
        return token, grant

    def redeem(self, token: str) -> Grant | None:
        """The grant of an unexpired token, or None."""
        now_ms = int(self._clock() * 1000)
        with self._lock:
            grant = self._grants.get(_digest(token))
        if grant is None or grant.expires_ms <= now_ms:
            return None
        return grant

    def _forget_expired(self, now_ms: int) -> None:
        for key in [k for k, g in self._grants.items() if g.expires_ms <= now_ms]:
            del self._grants[key]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()

"""SMART App Launch v2 scopes as data, and the one function that says what a scope set allows.

A scope is ``<context>/<resource type or *>.<interactions>[?<param>=<value>&...]``: context
``patient`` (one patient, the token's ``patient`` claim), ``user`` (what the signed-in person
may see) or ``system`` (a backend app, no user). Interactions are the letters ``c r u d s`` in
that order (create, read, update, delete, search); SMART v1's ``.read``, ``.write`` and ``.*``
are mapped to ``rs``, ``cud`` and ``cruds``.

Query restrictions (``patient/Observation.rs?category=...|vital-signs``) are parsed and kept:
such a scope permits a request only when the request itself is known to stay inside the
restriction (every ``param=value`` of the scope is among the request's ``facts``), so a
restricted scope never widens into the whole resource type.

Scopes only delegate: a scope that permits a request does not decide it, the server's own
policy (roles, care team, consent) still does. Scope strings that are not SMART resource
scopes (``openid``, ``fhirUser``, ``launch/patient``, ``offline_access``, anything unknown)
grant nothing and are kept as ``ScopeSet.other``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import parse_qsl

from access.errors import ScopeError

Context = Literal["patient", "user", "system"]
Interaction = Literal["c", "r", "u", "d", "s"]

CONTEXTS: tuple[Context, ...] = get_args(Context)
INTERACTION_ORDER = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}

# A FHIR resource type name (capitalised, letters only) or the wildcard.
_SCOPE_RE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})"
    r"\.(?P<perm>[a-z*]{1,5})(?:\?(?P<query>[^\s?]+))?$"
)


@dataclass(frozen=True)
class Scope:
    """One SMART resource scope, parsed."""

    context: Context
    resource: str  # a FHIR resource type, or "*"
    interactions: frozenset[Interaction]
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse one scope; ``ScopeError`` names what was expected and what was found."""
        m = _SCOPE_RE.match(text)
        if m is None:
            raise ScopeError(
                f"expected (patient|user|system)/(Type|*).(cruds letters|read|write|*), "
                f"found {text!r}"
            )
        perm = m["perm"]
        letters = V1_PERMISSIONS.get(perm, perm)
        if perm not in V1_PERMISSIONS and not _in_order(letters):
            raise ScopeError(f"interactions must be some of c r u d s in that order: {text!r}")
        query: tuple[tuple[str, str], ...] = ()
        if m["query"] is not None:
            if perm in V1_PERMISSIONS:
                raise ScopeError(f"a SMART v1 scope takes no query restriction: {text!r}")
            try:
                pairs = parse_qsl(m["query"], keep_blank_values=False, strict_parsing=True)
            except ValueError as exc:
                raise ScopeError(f"malformed query restriction in {text!r}") from exc
            query = tuple(sorted(pairs))
        context: Context = m["context"]  # type: ignore[assignment]  # the regex allows only these
        return cls(context, m["type"], frozenset(letters), query)  # type: ignore[arg-type]

    def __str__(self) -> str:
        letters = "".join(c for c in INTERACTION_ORDER if c in self.interactions)
        text = f"{self.context}/{self.resource}.{letters}"
        if self.query:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.query)
        return text

    def permits(
        self,
        context: Context,
        resource: str,
        interaction: Interaction,
        facts: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether this scope alone delegates ``interaction`` on ``resource`` in ``context``.

        ``facts``: search parameters the request is known to be restricted to; a scope with a
        query restriction permits only a request whose facts include every one of its pairs."""
        if self.context != context or interaction not in self.interactions:
            return False
        if self.resource not in ("*", resource):
            return False
        known = facts or {}
        return all(known.get(param) == value for param, value in self.query)

    def covers(self, other: Scope) -> bool:
        """Whether everything ``other`` delegates, this scope delegates too (a client may be
        granted ``other`` when it was allowed this)."""
        return (
            self.context == other.context
            and self.resource in ("*", other.resource)
            and other.interactions <= self.interactions
            and set(self.query) <= set(other.query)
        )


@dataclass(frozen=True)
class ScopeSet:
    """A token's granted scopes: SMART resource scopes parsed, everything else kept aside."""

    scopes: frozenset[Scope] = frozenset()
    other: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, claim: str | Iterable[str]) -> ScopeSet:
        """Parse a space-separated ``scope`` claim (or its words).

        A word that names a resource scope must be well formed (``ScopeError`` otherwise);
        words of any other shape are kept in ``other`` and grant nothing."""
        words = claim.split() if isinstance(claim, str) else list(claim)
        scopes: set[Scope] = set()
        other: set[str] = set()
        for word in words:
            if _looks_like_resource_scope(word):
                scopes.add(Scope.parse(word))
            else:
                other.add(word)
        return cls(frozenset(scopes), frozenset(other))

    def permits(
        self,
        context: Context,
        resource: str,
        interaction: Interaction,
        facts: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether any granted scope delegates this interaction (deny when none does)."""
        return any(s.permits(context, resource, interaction, facts) for s in self.scopes)

    def within(self, allowed: ScopeSet) -> ScopeSet:
        """The resource scopes of this set that ``allowed`` covers (what a request may be
        granted); other words are dropped."""
        kept = {s for s in self.scopes if any(a.covers(s) for a in allowed.scopes)}
        return ScopeSet(frozenset(kept))

    def __str__(self) -> str:
        return " ".join(sorted([*map(str, self.scopes), *self.other]))


def permits(
    granted: ScopeSet,
    context: Context,
    resource: str,
    interaction: Interaction,
    facts: Mapping[str, str] | None = None,
) -> bool:
    """Whether ``granted`` delegates ``interaction`` on ``resource`` in ``context``."""
    return granted.permits(context, resource, interaction, facts)


def _in_order(letters: str) -> bool:
    positions = [INTERACTION_ORDER.find(c) for c in letters]
    return -1 not in positions and positions == sorted(set(positions))


def _looks_like_resource_scope(word: str) -> bool:
    head, slash, rest = word.partition("/")
    # launch/patient and launch/encounter are launch-context requests, not resource scopes
    return bool(slash) and head in CONTEXTS and "." in rest

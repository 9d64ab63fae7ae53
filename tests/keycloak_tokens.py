"""Access tokens shaped the way Keycloak 26 builds them from deploy/keycloak/vitaltrail-realm.json.

No Keycloak runs here (it needs Java), so this reads the realm file and does what Keycloak does
with it when it issues an access token: the claims it always writes (``iss``, ``exp``, ``iat``,
``jti``, ``azp``, ``typ``, ``scope``), then the protocol mappers of the client's default client
scopes that apply to the user (a client scope with role scope mappings applies only to a user
holding one of those roles; its name joins ``scope`` when ``include.in.token.scope``). Only the
mapper types the realm uses are modelled: any other is an error, so a mapper added to the realm
file must be modelled here before the tests pass again. Tokens are signed RS256 with header
``typ: JWT``, as Keycloak signs them, by a key published in a JWK set beside an encryption key.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.jwk import RSAKey

REALM_FILE = Path(__file__).parents[1] / "deploy" / "keycloak" / "vitaltrail-realm.json"
DEFAULT_ROLES = ("default-roles-vitaltrail", "offline_access", "uma_authorization")


def load_realm() -> dict[str, Any]:
    realm: dict[str, Any] = json.loads(REALM_FILE.read_text())
    return realm


@dataclass(frozen=True)
class Person:
    """A user an admin created in Keycloak: its id is the token's ``sub``."""

    username: str
    roles: tuple[str, ...]
    attributes: Mapping[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class RealmTokens:
    def __init__(self, realm: Mapping[str, Any], issuer: str) -> None:
        self.realm = realm
        self.issuer = issuer
        self.key = RSAKey.generate_key(2048, parameters={"kid": "kc-rs256"})
        self.scopes = {scope["name"]: scope for scope in realm["clientScopes"]}
        self.clients = {client["clientId"]: client for client in realm["clients"]}
        self.scope_roles: dict[str, set[str]] = {}
        for mapping in realm.get("scopeMappings", []):
            self.scope_roles.setdefault(mapping["clientScope"], set()).update(mapping["roles"])

    def jwks(self) -> dict[str, Any]:
        """The realm's published keys: the signing key, and an encryption key to skip."""
        encryption = RSAKey.generate_key(2048, parameters={"kid": "kc-enc", "use": "enc"})
        signing = {**self.key.as_dict(private=False), "use": "sig", "alg": "RS256"}
        return {"keys": [signing, {**encryption.as_dict(private=False), "alg": "RSA-OAEP"}]}

    def for_person(self, client_id: str, person: Person) -> dict[str, Any]:
        """What the ward client's authorization code flow gives ``person`` (scope openid)."""
        roles = (*DEFAULT_ROLES, *person.roles)
        claims = self._base(client_id, "onrtac", session=True)
        return self._mapped(claims, client_id, person.id, roles, person.attributes, "openid")

    def for_service_account(self, client_id: str) -> dict[str, Any]:
        """What ``client_credentials`` gives a client, as its service account."""
        account = next(
            u for u in self.realm["users"] if u.get("serviceAccountClientId") == client_id
        )
        claims = self._base(client_id, "trrtcc", session=False)
        user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, account["username"]))
        roles = tuple(account.get("realmRoles", ()))
        return self._mapped(claims, client_id, user_id, roles, account.get("attributes", {}), "")

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.key.kid}
        return jws.serialize_compact(header, json.dumps(dict(claims)), self.key, ["RS256"])

    def _base(self, client_id: str, jti_prefix: str, *, session: bool) -> dict[str, Any]:
        client = self.clients[client_id]
        lifespan = int(
            client.get("attributes", {}).get("access.token.lifespan")
            or self.realm["accessTokenLifespan"]
        )
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + lifespan,
            "iat": now,
            "jti": f"{jti_prefix}:{uuid.uuid4()}",
            "iss": self.issuer,
            "typ": "Bearer",
            "azp": client_id,
            "acr": "1",
        }
        if session:
            claims["sid"] = str(uuid.uuid4())
        return claims

    def _mapped(
        self,
        claims: dict[str, Any],
        client_id: str,
        user_id: str,
        roles: tuple[str, ...],
        attributes: Mapping[str, Any],
        requested: str,
    ) -> dict[str, Any]:
        client = self.clients[client_id]
        granted = requested.split()
        mappers = list(client.get("protocolMappers", []))
        for name in client.get("defaultClientScopes", []):
            scope = self.scopes[name]
            needed = self.scope_roles.get(name)
            if needed is not None and not needed & set(roles):
                continue  # a scope with role scope mappings applies to holders of those roles
            if scope.get("attributes", {}).get("include.in.token.scope") == "true":
                granted.append(name)
            mappers += scope.get("protocolMappers", [])
        claims["scope"] = " ".join(granted)
        for mapper in mappers:
            _apply(mapper, claims, user_id, roles, attributes)
        return claims


def _apply(
    mapper: Mapping[str, Any],
    claims: dict[str, Any],
    user_id: str,
    roles: tuple[str, ...],
    attributes: Mapping[str, Any],
) -> None:
    config = mapper.get("config", {})
    if config.get("access.token.claim") != "true":
        return
    kind = mapper["protocolMapper"]
    if kind == "oidc-sub-mapper":
        claims["sub"] = user_id
    elif kind == "oidc-audience-mapper":
        audiences = claims.get("aud", [])
        audiences = [audiences] if isinstance(audiences, str) else audiences
        audiences.append(config["included.custom.audience"])
        claims["aud"] = audiences[0] if len(audiences) == 1 else audiences
    elif kind == "oidc-usermodel-realm-role-mapper":
        _set(claims, config["claim.name"], list(roles))
    elif kind == "oidc-usermodel-attribute-mapper":
        value = attributes.get(config["user.attribute"])
        if value is not None:  # Keycloak leaves the claim out for a user without the attribute
            _set(claims, config["claim.name"], value)
    else:
        raise ValueError(f"mapper type {kind!r} is not modelled here: model it first")


def _set(claims: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    node = claims
    for step in path:
        node = node.setdefault(step, {})
    node[last] = value

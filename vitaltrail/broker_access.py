"""Who may do what on the deployment's Mosquitto: its dynamic-security file, as data.

Why not ``acl_file``: Mosquitto 2.0 never checks a SUBSCRIBE against it (``security_default.c``:
"FIXME - implement ACL subscription strings"), so a device could join the ingestors' shared
subscription and have its share of every device's readings dropped, and nothing in it ties a
client id to a user, so a device could take over an ingestor's session (docs/decisions.md).
The dynamic-security plugin checks every SUBSCRIBE, refuses by default what no role allows, and
refuses a CONNECT whose client id is not the one bound to its user name. The rules:

* an ingestor replica (its own user and client id) may subscribe to the shared subscription
  ``$share/<group>/<root>/+/readings`` and nothing else, and receive readings;
* a device (user and client id = its device id) may publish to ``<root>/<id>/readings`` and do
  nothing else: no subscription at all;
* everything else is refused, ``$CONTROL`` included, so the broker never rewrites the file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ledger.keyfile import write_private
from vitaltrail.broker_auth import PasswordHash, new_password

DENY_ALL = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": False,
}


class Kind(Enum):
    INGESTOR = "ingestor"
    DEVICE = "device"


@dataclass(frozen=True)
class BrokerClient:
    """One broker identity: its user name is also the only client id it may connect with."""

    username: str
    kind: Kind


@dataclass(frozen=True)
class Topics:
    root: str = "vitaltrail/v1"
    share_group: str = "ingest"

    @property
    def readings(self) -> str:
        return f"{self.root}/+/readings"

    @property
    def shared(self) -> str:
        return f"$share/{self.share_group}/{self.readings}"

    def device(self, device_id: str) -> str:
        return f"{self.root}/{device_id}/readings"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def role_name(client: BrokerClient) -> str:
    return "ingestor" if client.kind is Kind.INGESTOR else f"device:{client.username}"


def role(client: BrokerClient, topics: Topics) -> dict[str, Any]:
    """What ``client`` may do (Mosquitto 2.0's roles have no %u: one role per device)."""
    if client.kind is Kind.INGESTOR:
        acls = [
            _acl("subscribeLiteral", topics.shared),
            _acl("unsubscribeLiteral", topics.shared),
            _acl("publishClientReceive", topics.readings),
        ]
    else:
        acls = [_acl("publishClientSend", topics.device(client.username))]
    return {"rolename": role_name(client), "acls": acls}


def read_hashes(path: Path) -> dict[str, PasswordHash]:
    """The password hashes already in a dynamic-security file (none if there is no file)."""
    if not path.exists():
        return {}
    hashes = {}
    for entry in json.loads(path.read_text()).get("clients", []):
        hashes[entry["username"]] = PasswordHash(
            base64.b64decode(entry["salt"]),
            base64.b64decode(entry["password"]),
            int(entry["iterations"]),
        )
    return hashes


def access_config(
    clients: Iterable[BrokerClient], hashes: dict[str, PasswordHash], topics: Topics
) -> dict[str, Any]:
    """The dynamic-security document for ``clients`` (each must have a hash)."""
    ordered = sorted(clients, key=lambda c: c.username)
    roles = {role_name(c): role(c, topics) for c in ordered}
    return {
        "defaultACLAccess": DENY_ALL,
        "clients": [
            {
                "username": c.username,
                "clientid": c.username,
                **hashes[c.username].dynsec_fields(),
                "roles": [{"rolename": role_name(c), "priority": 0}],
            }
            for c in ordered
        ],
        "groups": [],
        "roles": list(roles.values()),
    }


def write_access(
    path: Path, clients: list[BrokerClient], topics: Topics, renew: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Write the broker's dynamic-security file for ``clients``; keep the hash of every client
    already in it, except those in ``renew``. Returns the clear password of each client that got
    a new one: the only time anyone sees it (the file holds hashes only).

    A client in the file but not in ``clients`` is dropped: the list is the whole truth."""
    hashes = {u: h for u, h in read_hashes(path).items() if u not in renew}
    issued = {c.username: new_password() for c in clients if c.username not in hashes}
    hashes |= {user: PasswordHash.of(password) for user, password in issued.items()}
    document = access_config(clients, hashes, topics)
    write_private(path, (json.dumps(document, indent=2) + "\n").encode())
    return issued

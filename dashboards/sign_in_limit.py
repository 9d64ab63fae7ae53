"""How often one client address may try a password, whatever names it tries.

The user store locks an account after five failures, however many addresses guess at it; this
limit is the other half: one address may make ``attempts`` sign-in attempts per ``window_s``
(right or wrong), refused before any password is hashed, so one address can neither lock every
account in turn nor spend the server's CPU on argon2. An IPv6 client is counted by its /64,
the block one host is commonly given. The table is bounded: past ``max_addresses`` the address
seen longest ago is forgotten first.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AddressLimitPolicy:
    attempts: int = 10
    window_s: float = 300.0
    max_addresses: int = 10_000


def address_key(host: str | None) -> str:
    """The unit an address is counted in: an IPv4 address, an IPv6 /64."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)


class AddressLimit:
    """A sliding window of attempt times per address."""

    def __init__(
        self,
        policy: AddressLimitPolicy = AddressLimitPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def attempt(self, host: str | None) -> float:
        """Count an attempt from ``host``: 0 if it may go ahead, else the seconds until it may
        (the attempt refused is not counted)."""
        key = address_key(host)
        now = self._clock()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            while times and times[0] <= now - self.policy.window_s:
                times.popleft()
            wait = 0.0
            if len(times) >= self.policy.attempts:
                wait = max(1.0, math.ceil(times[0] + self.policy.window_s - now))
            else:
                times.append(now)
            self._seen[key] = times  # most recently seen last
            while len(self._seen) > self.policy.max_addresses:
                self._seen.popitem(last=False)
            return wait

    def tracked(self) -> int:
        with self._lock:
            return len(self._seen)

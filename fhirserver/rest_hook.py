"""The rest-hook channel: POST a notification Bundle to the subscriber's endpoint.

As the Backport IG says (channels.html, REST-Hook): the body is the Bundle, its
``Content-Type`` the subscription's payload type, each ``channel.header`` an HTTP header. An
attempt succeeds on a 2xx answer within the subscription's timeout; anything else is a
failure with a reason code (the engine retries with backoff, then puts the subscription in
``error``). Redirects are not followed and the answer's body is never read: an endpoint can
neither send this server elsewhere nor make it hold a large answer. Proxies from the
environment are not used (``trust_env=False``): where notifications go is the subscription's
endpoint, nothing else.
"""

from __future__ import annotations

import httpx2

from fhirserver.media import FHIR_JSON


class RestHook:
    """One HTTP client for every endpoint (its connection pool bounded)."""

    def __init__(self, client: httpx2.AsyncClient | None = None) -> None:
        self._client = client or httpx2.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            limits=httpx2.Limits(max_connections=64, max_keepalive_connections=16),
        )

    async def post(
        self, endpoint: str, headers: tuple[str, ...], body: bytes, timeout_s: float
    ) -> str | None:
        """Deliver ``body``; None when the endpoint took it, else why not (a reason code)."""
        sent = {name: value.strip() for name, _, value in (h.partition(":") for h in headers)}
        sent["Content-Type"] = FHIR_JSON
        try:
            async with self._client.stream(
                "POST", endpoint, content=body, headers=sent, timeout=timeout_s
            ) as answer:
                status = answer.status_code
        except httpx2.TimeoutException:
            return "timeout"
        except httpx2.HTTPError as exc:
            return "unreachable" if isinstance(exc, httpx2.TransportError) else "http-error"
        if 200 <= status < 300:
            return None
        return f"http-{status}"

    async def close(self) -> None:
        await self._client.aclose()

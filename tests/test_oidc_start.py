"""The API and an external OpenID provider at start: found at the discovery URL it is given,
waited for while it starts (Keycloak beside it in compose), and a clear error - no traceback -
when it does not come."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from access.errors import ProviderError
from tests.populated import populate
from tests.servers import free_port
from vitaltrail.cli import main
from vitaltrail.runtime import trust_provider
from vitaltrail.settings import Settings

ISSUER = "https://ward.hospital.example:8444/realms/vitaltrail"
DISCOVERY = "https://keycloak:8443/realms/vitaltrail/.well-known/openid-configuration"
JWKS = "https://keycloak:8443/realms/vitaltrail/protocol/openid-connect/certs"


class StartingProvider:
    """A provider whose first ``failures`` fetches fail, as one that is still starting."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.asked: list[str] = []

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.asked.append(url)
        if len(self.asked) <= self.failures:
            raise ProviderError(f"{url}: ConnectError")
        return {"issuer": ISSUER, "jwks_uri": JWKS}


class Time:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def settings(**changes: Any) -> Settings:
    return Settings(
        oidc_issuer=ISSUER,
        oidc_discovery_url=DISCOVERY,
        oidc_roles_claim="realm_access.roles",
        oidc_require_at_jwt=False,
        oidc_app_role="app",
        **changes,
    )


def test_a_provider_still_starting_is_waited_for() -> None:
    provider, time = StartingProvider(failures=2), Time()
    trusted = trust_provider(settings(), provider, sleep=time.sleep, clock=time.clock)
    assert time.slept == [1.0, 2.0]
    assert provider.asked == [DISCOVERY] * 3  # the discovery URL, not <issuer>/.well-known
    assert trusted.issuer == ISSUER  # tokens' iss: the public name, as the document says
    assert trusted.roles_claim == ("realm_access", "roles")
    assert not trusted.require_at_jwt
    assert trusted.app_role == "app"


def test_a_provider_that_does_not_come_stops_the_start_with_the_reason() -> None:
    provider, time = StartingProvider(failures=100), Time()
    with pytest.raises(ProviderError, match=r"could not be had within 20 s: .*ConnectError"):
        trust_provider(
            settings(oidc_start_timeout_s=20), provider, sleep=time.sleep, clock=time.clock
        )
    assert time.slept == [1.0, 2.0, 4.0, 8.0]  # 15 s; 10 s more would pass the deadline
    assert len(provider.asked) == 5


def test_serve_says_why_it_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = populate(tmp_path / "data", patients=1, readings=1).data_dir
    monkeypatch.setenv("VITALTRAIL_OIDC_ISSUER", f"https://127.0.0.1:{free_port()}/realms/x")
    monkeypatch.setenv("VITALTRAIL_OIDC_START_TIMEOUT_S", "0")
    assert main(["--data-dir", str(data), "serve", "--http-port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the OpenID provider https://127.0.0.1:")
    assert "Traceback" not in err

"""The embedded issuer and browser sign-in, configured from Settings (the composition root)."""

from __future__ import annotations

from access.issuer import Issuer, IssuerConfig
from dashboards.auth_routes import TOKEN_PATH, WebAuth
from dashboards.session_store import SessionPolicy
from dashboards.sign_in_limit import AddressLimitPolicy
from vitaltrail.settings import Settings


def issuer_config(settings: Settings) -> IssuerConfig:
    """The embedded issuer, the one way the API, the token endpoint and `vitaltrail token`
    see it: ``iss`` its URL (this API's public URL unless ``issuer_url`` says otherwise),
    ``aud`` the API's audience, and the token endpoint where apps post their assertions."""
    return IssuerConfig(
        issuer=settings.embedded_issuer,
        audience=settings.api_audience,
        token_endpoint=settings.base_url + TOKEN_PATH,
    )


def web_auth(settings: Settings) -> WebAuth:
    return WebAuth(
        open_issuer=lambda: Issuer.open(settings.data_dir, issuer_config(settings)),
        sessions_path=settings.sessions_path,
        session_policy=SessionPolicy(ttl_s=settings.session_ttl_s, idle_s=settings.session_idle_s),
        address_limit=AddressLimitPolicy(
            attempts=settings.sign_in_attempts_per_address,
            window_s=settings.sign_in_address_window_s,
        ),
    )

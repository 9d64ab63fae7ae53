"""An app with the consent routes over a real journal, app store and embedded issuer: what the
route tests and the patient page's browser test share."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from joserfc.jwk import ECKey

from access.consent import ConsentStatement, SignedConsent, sign_consent
from access.consent_store import ConsentStore
from access.errors import TokenError
from access.issuer import Issuer, IssuerConfig
from access.journal import Journal
from access.tokens import Principal, TokenVerifier
from access.trail import AccessTrail
from dashboards.consent_routes import ConsentServices, consent_router
from dashboards.refusals import Refused
from devices.keys import DeviceSigner

ISS = "https://vitaltrail.test"
AUD = "https://vitaltrail.test/api"
PASSWORD = "correct horse battery"
STATIC = Path(__file__).parent.parent / "dashboards" / "static"
# The page's policy (dashboards/security_headers.py on the sign-in branch): no inline code.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bearer_principal(verifier: TokenVerifier) -> Callable[[Request], Principal]:
    """What the lead's dependency does for a bearer token: 401 with WWW-Authenticate."""

    def principal(request: Request) -> Principal:
        try:
            return verifier.verify_authorization(request.headers.get("authorization"))
        except TokenError as exc:
            headers = {"WWW-Authenticate": exc.www_authenticate}
            raise Refused(exc.status, exc.reason, exc.description, headers) from None

    return principal


@dataclass
class ConsentApp:
    app: FastAPI
    issuer: Issuer
    services: ConsentServices
    journal: Journal
    verifier: TokenVerifier

    def token(self, name: str) -> str:
        user = self.issuer.users.get(name)
        assert user is not None
        return self.issuer.token_for(user).access_token

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name)}"}

    def close(self) -> None:
        self.journal.close()
        self.issuer.close()


def app_jwks() -> dict[str, Any]:
    key = ECKey.generate_key("P-384", private=False)
    return {"keys": [{**key.as_dict(private=False), "kid": "k1", "alg": "ES384"}]}


def consent_app(
    data_dir: Path,
    *,
    principal: Callable[..., Any] | None = None,
    clock: Callable[[], float] = time.time,
    page: bool = False,
) -> ConsentApp:
    """Users ana (patient p-17), ben (patient p-18), dr-cho (clinician), ada (admin); apps
    telemed-1 (named) and old-app (disabled)."""
    issuer = Issuer.open(
        data_dir,
        IssuerConfig(ISS, AUD, f"{ISS}/oauth/token"),
        hasher=PasswordHasher.from_parameters(CHEAPEST),
    )
    issuer.users.add("ana", "patient", PASSWORD, patient_id="p-17")
    issuer.users.add("ben", "patient", PASSWORD, patient_id="p-18")
    issuer.users.add("dr-cho", "clinician", PASSWORD)
    issuer.users.add("ada", "admin", PASSWORD)
    issuer.apps.register("telemed-1", "Telemed One", app_jwks(), "system/Observation.rs")
    issuer.apps.register("old-app", "Old App", app_jwks(), "system/Observation.rs")
    issuer.apps.set_disabled("old-app")
    journal = Journal(data_dir / "access-journal.db")
    store = ConsentStore(journal)
    services = ConsentServices(store, issuer.apps, AccessTrail(journal, store), clock=clock)
    verifier = TokenVerifier(AUD, [issuer.trusted_issuer()])
    app = FastAPI()
    app.state.consent_services = services
    app.include_router(consent_router(principal or bearer_principal(verifier)))
    if page:
        app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

        @app.middleware("http")
        async def policy(request: Request, call_next: Callable[..., Any]) -> Any:
            response = await call_next(request)
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response

    return ConsentApp(app, issuer, services, journal, verifier)


def signed(signer: DeviceSigner, statement: ConsentStatement) -> str:
    """The POST /api/v1/me/consents body field: the patient's COSE_Sign1, base64url."""
    consent: SignedConsent = sign_consent(signer, statement)
    return b64url(consent.message)

"""Fetching an issuer's keys: bounded in size and time, and a refresh never stalls the requests
whose keys are already held."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc.jwk import ECKey

from access.errors import ProviderError
from access.jwks import HttpJson, JwkSetCache


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)


K1, K2 = ec_key("k1"), ec_key("k2")


class Handler(BaseHTTPRequestHandler):
    """Answers by path: the ways an issuer's endpoint can misbehave."""

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(40):  # a byte every 0.1 s: each read is quick, the whole is not
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass  # the client gave up, as it should
            return
        bodies = {
            "/ok": b'{"keys": []}',
            "/big": b" " * 300_000 + b"{}",
            "/text": b"hello",
            "/list": b"[]",
        }
        body = bodies.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def http() -> Iterator[HttpJson]:
    client = HttpJson(timeout_s=1.0)
    yield client
    client.close()


def test_json_object_is_read(server: str, http: HttpJson) -> None:
    assert http(f"{server}/ok") == {"keys": []}


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/big", "more than"),
        ("/text", "no JSON"),
        ("/list", "not an object"),
        ("/missing", "HTTP 404"),
    ],
)
def test_bad_answers_are_provider_errors(server: str, http: HttpJson, path: str, why: str) -> None:
    with pytest.raises(ProviderError, match=why):
        http(f"{server}{path}")


def test_a_dripping_server_cannot_hold_the_caller(server: str, http: HttpJson) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderError, match="took over"):
        http(f"{server}/slow")
    assert time.monotonic() - started < 2.0


class GatedProvider:
    """A JWK set whose fetch waits until the test opens the gate."""

    def __init__(self, *keys: ECKey) -> None:
        self.doc = {"keys": [k.as_dict(private=False) for k in keys]}
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def fetch(self, url: str) -> Mapping[str, Any]:
        self.calls += 1
        assert self.gate.wait(5)
        return self.doc


def test_a_refresh_does_not_stall_requests_for_held_keys() -> None:
    provider = GatedProvider(K1)
    now = [0.0]
    cache = JwkSetCache("https://idp/jwks", provider.fetch, clock=lambda: now[0])
    assert cache.key("k1").kid == "k1"
    provider.doc = {"keys": [K1.as_dict(private=False), K2.as_dict(private=False)]}
    provider.gate.clear()
    now[0] = 31
    got: list[str | None] = []
    refresher = threading.Thread(target=lambda: got.append(cache.key("k2").kid))
    refresher.start()
    while provider.calls < 2:  # the refresher is inside its fetch, the gate closed
        time.sleep(0.01)
    started = time.monotonic()
    assert cache.key("k1").kid == "k1"  # served while the refresh hangs
    assert time.monotonic() - started < 0.5
    provider.gate.set()
    refresher.join(5)
    assert got == ["k2"]
    assert cache.fetches == 2


def test_requests_that_need_the_set_wait_for_one_fetch() -> None:
    provider = GatedProvider(K1)
    provider.gate.clear()
    cache = JwkSetCache("https://idp/jwks", provider.fetch, clock=lambda: 0.0)
    got: list[str | None] = []
    threads = [threading.Thread(target=lambda: got.append(cache.key("k1").kid)) for _ in range(8)]
    for thread in threads:
        thread.start()
    while provider.calls < 1:
        time.sleep(0.01)
    time.sleep(0.05)
    provider.gate.set()
    for thread in threads:
        thread.join(5)
    assert got == ["k1"] * 8
    assert provider.calls == 1

"""The session store on its own: what it keeps, how long, and how little it writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.session_store import SessionPolicy, SessionStore
from dashboards.sign_in_limit import AddressLimit, AddressLimitPolicy, address_key
from tests.auth_app import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[SessionStore]:
    opened = SessionStore(
        tmp_path / "sessions.db",
        SessionPolicy(ttl_s=3600, idle_s=600, touch_every_s=60, max_per_user=3),
        clock=clock,
    )
    yield opened
    opened.close()


def test_only_a_hash_of_the_secret_is_kept(store: SessionStore, tmp_path: Path) -> None:
    opened = store.create("nurse.ada")
    store.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("sessions.db*"))
    assert opened.secret.encode() not in stored
    assert opened.session.csrf_token.encode() in stored  # the server's half of the CSRF check
    reopened = SessionStore(tmp_path / "sessions.db")
    found = reopened.get(opened.secret)
    reopened.close()
    assert found is not None
    assert found.user == "nurse.ada"


def test_each_session_has_its_own_secret_id_and_csrf_token(store: SessionStore) -> None:
    a, b = store.create("nurse.ada"), store.create("nurse.ada")
    assert len({a.secret, b.secret, a.session.csrf_token, b.session.csrf_token}) == 4
    assert a.session.public_id != b.session.public_id
    assert len(a.secret) == 43  # 256 random bits


def test_last_seen_is_written_at_most_once_a_minute(store: SessionStore, clock: Clock) -> None:
    opened = store.create("nurse.ada")
    clock.now += 30
    seen = store.get(opened.secret)
    assert seen is not None
    assert seen.last_seen == opened.session.last_seen  # not written: too soon
    clock.now += 31
    seen = store.get(opened.secret)
    assert seen is not None
    assert seen.last_seen == clock.now


def test_a_user_keeps_a_bounded_number_of_sessions(store: SessionStore, clock: Clock) -> None:
    made = []
    for _ in range(5):
        clock.now += 1
        made.append(store.create("nurse.ada"))
    store.create("nurse.bo")
    assert store.count() == 4
    assert [store.get(m.secret) is not None for m in made] == [False, False, True, True, True]


def test_sign_in_sweeps_ended_sessions(store: SessionStore, clock: Clock) -> None:
    store.create("nurse.ada")
    clock.now += 601
    store.create("nurse.bo")
    assert store.count() == 1


def test_revoke_user_ends_all_their_sessions(store: SessionStore) -> None:
    a, b, c = store.create("nurse.ada"), store.create("nurse.ada"), store.create("nurse.bo")
    assert store.revoke_user("nurse.ada") == 2
    assert store.get(a.secret) is None
    assert store.get(b.secret) is None
    assert store.get(c.secret) is not None


@pytest.mark.parametrize("secret", ["", "x" * 65, "\udcff", "a" * 43])
def test_strange_secrets_open_nothing(store: SessionStore, secret: str) -> None:
    store.create("nurse.ada")
    assert store.get(secret) is None
    assert store.revoke(secret) is False
    assert store.refusals["session_unknown"] == 1


def test_csrf_tokens_compare_in_constant_time_and_exactly(store: SessionStore) -> None:
    session = store.create("nurse.ada").session
    assert session.csrf_matches(session.csrf_token)
    assert not session.csrf_matches(session.csrf_token[:-1])
    assert not session.csrf_matches(None)
    assert not session.csrf_matches("\udcff")


# --- the per-address sign-in limit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same host's block
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_addresses_are_counted_by_ipv4_address_or_ipv6_64(host: str | None, key: str) -> None:
    assert address_key(host) == key


def test_the_window_slides(clock: Clock) -> None:
    limit = AddressLimit(AddressLimitPolicy(attempts=3, window_s=60), clock=clock)
    for _ in range(3):
        assert limit.attempt("203.0.113.7") == 0
        clock.now += 10
    assert limit.attempt("203.0.113.7") == 30  # the first attempt leaves the window in 30 s
    assert limit.attempt("203.0.113.8") == 0  # another address has its own budget
    clock.now += 30
    assert limit.attempt("203.0.113.7") == 0
    assert limit.attempt("203.0.113.7") > 0  # refused attempts did not count


def test_the_table_of_addresses_is_bounded(clock: Clock) -> None:
    limit = AddressLimit(AddressLimitPolicy(attempts=1, max_addresses=100), clock=clock)
    for i in range(1000):
        limit.attempt(f"10.0.{i // 256}.{i % 256}")
    assert limit.tracked() == 100
    assert limit.attempt("10.0.3.231") > 0  # the most recent are remembered

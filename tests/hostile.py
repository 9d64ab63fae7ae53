"""Hypothesis strategies for the hostile-input modules (tests/test_hostile_*.py), one per decoder.

They draw from what `vitaltrail bench fuzz` draws from (vitaltrail.bench.fuzz_corpus and
fuzz_inputs): random bytes, byte edits of valid encodings (drawn, so hypothesis shrinks a
failure to the fewest edits), and edits that know the format. Fast settings: a few hundred
examples per decoder, the same ones on every run; the million-input run is the benchmark's.
"""

from __future__ import annotations

import random
from functools import cache

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from devices.boundary import caught_at_boundary
from vitaltrail.bench.fuzz_corpus import Target, targets
from vitaltrail.bench.fuzz_inputs import (
    CBOR_TOKENS,
    OPS,
    TEXT_TOKENS,
    Edit,
    apply_edits,
    structured,
)

FAST = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@cache
def target(name: str) -> Target:
    return {t.name: t for t in targets()}[name]


def edits(kind: str) -> st.SearchStrategy[list[Edit]]:
    tokens = (
        CBOR_TOKENS if kind == "cbor" else [t.encode("utf-8", "surrogatepass") for t in TEXT_TOKENS]
    )
    blob = st.one_of(st.sampled_from(tokens), st.binary(min_size=1, max_size=12))
    edit = st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16), blob)
    return st.lists(edit, min_size=1, max_size=6)


def hostile(name: str) -> st.SearchStrategy[bytes]:
    """Inputs for the decoder ``name`` of the benchmark's table."""
    t = target(name)
    seeds = st.sampled_from(t.seeds)
    return st.one_of(
        st.binary(max_size=600),
        st.builds(apply_edits, seeds, edits(t.kind), seeds),
        st.randoms(use_true_random=False).map(lambda rng: _structured(rng, t)),
    )


def _structured(rng: random.Random, t: Target) -> bytes:
    return structured(rng, t)


def decode_or_documented_error(name: str, data: bytes) -> object:
    """Run the decoder: it returns, or raises its documented error for a reason of its own
    (not one only the boundary's net caught). Anything else fails the test."""
    t = target(name)
    try:
        return t.decode(data)
    except t.errors as exc:
        refused = exc
    if caught_at_boundary(refused):
        raise AssertionError(f"only the net caught {refused.__cause__!r}") from refused
    return refused

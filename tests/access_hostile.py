"""Hypothesis strategies for the access decoders, drawn the way tests/hostile.py draws for the
benchmark's table: random bytes, byte edits of valid encodings, and edits that know CBOR."""

from __future__ import annotations

import copy as copy_module
import random
from collections.abc import Callable, Iterator
from typing import Any

import cbor2
from hypothesis import strategies as st

from devices.boundary import caught_at_boundary
from tests.hostile import edits
from vitaltrail.bench.fuzz_corpus import Target
from vitaltrail.bench.fuzz_inputs import apply_edits, structured


def hostile_cbor(name: str, seeds: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    target = Target(name, lambda b: None, (), seeds, "cbor")
    seed = st.sampled_from(seeds)
    return st.one_of(
        st.binary(max_size=600),
        st.builds(apply_edits, seed, edits("cbor"), seed),
        st.randoms(use_true_random=False).map(lambda rng: _structured(rng, target)),
    )


def _structured(rng: random.Random, target: Target) -> bytes:
    return structured(rng, target)


def returns_or_raises_only(
    decode: Callable[[bytes], object], error: type[Exception], data: bytes
) -> object:
    """Run ``decode``: it returns, or raises ``error`` for a reason of its own (not one only
    the boundary's net caught); anything else fails the test."""
    try:
        return decode(data)
    except error as exc:
        if caught_at_boundary(exc):
            raise AssertionError(f"only the net caught {exc.__cause__!r}") from exc
        return exc


HOSTILE_VALUES: tuple[object, ...] = (
    None,
    True,
    -1,
    2**64,
    1.5,
    float("nan"),
    b"\x00",
    "",
    "a\nb",
    "x" * 5000,
    [],
    [[1]],
    {},
    {"k": [1]},
    cbor2.CBORTag(1, 0),
)


def every_node_replaced(seed: bytes) -> Iterator[bytes]:
    """The seed's CBOR with each node in turn (map values, array items, the whole) replaced
    by each of :data:`HOSTILE_VALUES`: the systematic half of the format-aware edits."""
    doc = cbor2.loads(seed)
    for path in node_paths(doc):
        for value in HOSTILE_VALUES:
            yield cbor2.dumps(replaced(doc, path, value), canonical=True)


def node_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every node of a decoded document (map keys, array indices), the root first."""
    yield prefix
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        yield from node_paths(child, (*prefix, key))


def replaced(node: Any, path: tuple[Any, ...], value: object) -> Any:
    """A copy of ``node`` with the node at ``path`` replaced by ``value``."""
    if not path:
        return value
    copy = copy_module.copy(node)
    copy[path[0]] = replaced(node[path[0]], path[1:], value)
    return copy

"""RFC 9162 Merkle tree hashing and proofs, as small pure functions.

Leaves hash as SHA-256(0x00 || data), interior nodes as SHA-256(0x01 || left || right).
Proof *generation* is expressed as lists of leaf ranges ``[lo, hi)`` whose subtree hashes form
the proof; storage turns a range into hashes from stored perfect subtrees (see
:func:`perfect_subtrees`), so no proof ever recomputes leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class VerificationError(Exception):
    """A Merkle proof does not prove what it claims."""


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 section 2.1.1: the largest power of two strictly less than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes by the definition; for tests and audits of small ranges."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = largest_power_of_two_below(n)
    return hash_children(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


def perfect_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """Split ``[lo, hi)`` into aligned perfect subtrees ``(level, index)``, left to right.

    A subtree ``(level, index)`` covers leaves ``[index << level, (index + 1) << level)``.
    The range's hash is the right fold of these: H(P1, H(P2, ... Pn)). ``lo`` must be
    aligned as in every range RFC 9162's recursion produces.
    """
    nodes: list[tuple[int, int]] = []
    while lo < hi:
        size = hi - lo
        k = size if size & (size - 1) == 0 else largest_power_of_two_below(size)
        level = k.bit_length() - 1
        if lo % k:
            raise ValueError(f"range start {lo} is not aligned to {k}")
        nodes.append((level, lo >> level))
        lo += k
    return nodes


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from its perfect subtrees' hashes (see :func:`perfect_subtrees`)."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = hash_children(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form PATH(index, D[0:size]), the leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = largest_power_of_two_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form PROOF(old_size, D[0:new_size]) (RFC 9162 2.1.4.1)."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"cannot prove size {old_size} consistent with size {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while m != hi - lo:
        k = largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2. Raise :class:`VerificationError` unless the proof holds."""
    if not 0 <= index < size:
        raise VerificationError(f"index {index} is beyond tree size {size}")
    _check_hashes([leaf_hash, root, *proof])
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise VerificationError("inclusion proof does not lead to the checkpoint's root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2. Raise :class:`VerificationError` unless the proof holds."""
    if not 0 <= old_size <= new_size:
        raise VerificationError(f"size {old_size} cannot precede size {new_size}")
    if old_size == 0:
        raise VerificationError("every tree extends the empty tree: there is nothing to prove")
    if old_size == new_size:
        if proof:
            raise VerificationError("equal sizes need an empty consistency proof")
        if old_root != new_root:
            raise VerificationError("two different roots for one tree size")
        return
    _check_hashes([old_root, new_root, *proof])
    if not proof:
        raise VerificationError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    if fr != old_root:
        raise VerificationError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise VerificationError("consistency proof does not lead to the new root")


def _check_hashes(hashes: Sequence[bytes]) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise VerificationError(f"every hash must be {HASH_SIZE} bytes")

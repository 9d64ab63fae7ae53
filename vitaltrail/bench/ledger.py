"""`vitaltrail bench ledger`: the Merkle log's appends, proofs and verification beside pymerkle 7.

One run, the same entries for both, each in its own SQLite file on this disk:

* ceilings - SHA-256 of the entries on one core (every append must hash each entry at least
  once) and bare SQLite inserts of the same rows with a full fsync per batch;
* appends - entries/s, in batches, to ``--entries`` (default ten million): vitaltrail's
  :class:`~ledger.storage.MerkleLog` (dedup key index, interior hashes in tiles, fsync per
  batch) and pymerkle's ``SqliteTree.append_entries`` (leaf hashes only);
* proofs - inclusion and consistency proof generation p50/p99 at the full size, over the
  same random indexes, then the rate at which each library verifies its own proofs.

pymerkle computes interior hashes from leaves on demand (with an LRU cache), so its first
proofs at a large size read most of the leaves; ``--pymerkle-seconds`` caps the time it is
given for proofs, and the report says how many it finished.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ledger.appends import EntryKey, NewEntry
from ledger.database import Database
from ledger.merkle import hash_leaf, verify_consistency, verify_inclusion
from ledger.storage import MerkleLog
from vitaltrail.bench.ingest import machine, percentile


def entry_data(index: int, size: int) -> bytes:
    """A deterministic, distinct entry of ``size`` bytes (about a signed reading's size)."""
    seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
    return (seed * (size // 32 + 1))[:size]


def batches(total: int, batch: int, size: int) -> Any:
    for start in range(0, total, batch):
        yield start, [entry_data(i, size) for i in range(start, min(total, start + batch))]


def sha256_ceiling(size: int, n: int = 200_000) -> float:
    data = [entry_data(i, size) for i in range(n)]
    start = time.perf_counter()
    for d in data:
        hashlib.sha256(d).digest()
    return n / (time.perf_counter() - start)


def sqlite_insert_ceiling(work: Path, size: int, n: int, batch: int) -> float:
    """Bare rows (index, data) into a rowid table, WAL and a full fsync per batch."""
    db = Database.sqlite(work / "ceiling.db")
    db.script("CREATE TABLE t (idx BIGINT PRIMARY KEY, data BLOB NOT NULL)")
    elapsed = 0.0
    for start, data in batches(n, batch, size):
        rows = [(start + i, d) for i, d in enumerate(data)]
        t0 = time.perf_counter()
        with db.transaction():
            db.executemany("INSERT INTO t VALUES (?, ?)", rows)
        elapsed += time.perf_counter() - t0
    db.close()
    return n / elapsed


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def append_vitaltrail(path: Path, total: int, batch: int, size: int, devices: int) -> float:
    """Appends, then closing the log: the time includes the WAL checkpoints still owed."""
    db = Database.sqlite(path)
    log = MerkleLog(db)
    elapsed = 0.0
    for start, data in batches(total, batch, size):
        entries = [
            NewEntry(EntryKey(f"reading/bench-{i % devices:04d}", i // devices), d)
            for i, d in enumerate(data, start)
        ]
        elapsed += _timed(partial(log.append, entries))
        if start // batch % 100 == 0:
            print(f"  vitaltrail: {start + len(data):,} entries", flush=True)
    elapsed += _timed(log.close) + _timed(db.close)
    return total / elapsed


def append_pymerkle(tree: Any, total: int, batch: int, size: int) -> float:
    elapsed = 0.0
    for start, data in batches(total, batch, size):
        elapsed += _timed(partial(tree.append_entries, data))
        if start // batch % 100 == 0:
            print(f"  pymerkle: {start + len(data):,} entries", flush=True)
    return total / elapsed


def latencies_ms(calls: Sequence[Callable[[], object]], budget_s: float) -> list[float]:
    """Time each call, stopping when the budget is spent."""
    out: list[float] = []
    deadline = time.monotonic() + budget_s
    for call in calls:
        out.append(_timed(call) * 1000)
        if time.monotonic() > deadline:
            break
    return out


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99)}


def run_bench_ledger(args: argparse.Namespace) -> int:
    try:
        import pymerkle  # a bench-only dependency: the peer to beat
    except ImportError:
        print("the ledger bench compares with pymerkle 7: pip install 'vitaltrail[bench]'")
        return 2

    total, batch, size = args.entries, args.batch, args.entry_bytes
    rng = random.Random(7)
    indexes = [rng.randrange(total) for _ in range(args.proofs)]
    old_sizes = [rng.randrange(1, total) for _ in range(args.proofs)]
    report: dict[str, Any] = {
        "machine": machine(),
        "command": f"vitaltrail bench ledger --entries {total} --batch {batch} "
        f"--entry-bytes {size} --proofs {args.proofs}",
        "pymerkle": pymerkle.__version__,
    }
    print(f"machine: {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-ledger-", dir=args.dir) as tmp:
        work = Path(tmp)
        report["ceilings"] = {
            "sha256_per_s": sha256_ceiling(size),
            "sqlite_rows_per_s": sqlite_insert_ceiling(work, size, min(total, 500_000), batch),
        }
        print(
            f"ceilings: SHA-256 {report['ceilings']['sha256_per_s']:,.0f} entries/s on one core; "
            f"bare SQLite inserts {report['ceilings']['sqlite_rows_per_s']:,.0f} rows/s"
        )

        ours_append = append_vitaltrail(work / "vitaltrail.db", total, batch, size, args.devices)
        print(f"vitaltrail appends: {ours_append:,.0f} entries/s")
        tree = pymerkle.SqliteTree(str(work / "pymerkle.db"))
        theirs_append = append_pymerkle(tree, total, batch, size)
        print(f"pymerkle appends:   {theirs_append:,.0f} entries/s")

        db = Database.sqlite(work / "vitaltrail.db", read_only=True)
        log = MerkleLog(db, read_only=True)  # proofs are served by readers, like the API's
        root = log.root_at(total)
        leaves = {i: hash_leaf(entry_data(i, size)) for i in indexes}
        ours_incl = latencies_ms([partial(log.inclusion_proof, i, total) for i in indexes], 600)
        ours_cons = latencies_ms([partial(log.consistency_proof, m, total) for m in old_sizes], 600)
        theirs_incl = latencies_ms(
            [partial(tree.prove_inclusion, i + 1, total) for i in indexes],
            args.pymerkle_seconds,
        )
        theirs_cons = latencies_ms(
            [partial(tree.prove_consistency, m, total) for m in old_sizes],
            args.pymerkle_seconds,
        )
        for name, ours, theirs in [
            ("inclusion", ours_incl, theirs_incl),
            ("consistency", ours_cons, theirs_cons),
        ]:
            print(
                f"{name} proofs at {total:,}: vitaltrail p50 {percentile(ours, 50):.3f} ms "
                f"p99 {percentile(ours, 99):.3f} ms ({len(ours)}); pymerkle p50 "
                f"{percentile(theirs, 50):.3f} ms p99 {percentile(theirs, 99):.3f} ms ({len(theirs)})"
            )

        proofs = [(i, log.inclusion_proof(i, total)) for i in indexes[:1000]]
        start = time.perf_counter()
        for i, proof in proofs:
            verify_inclusion(leaves[i], i, total, proof, root)
        ours_verify = len(proofs) / (time.perf_counter() - start)
        cons = [(m, log.consistency_proof(m, total), log.root_at(m)) for m in old_sizes[:200]]
        for m, proof, old_root in cons:
            verify_consistency(m, total, old_root, root, proof)
        their_state = tree.get_state()
        their_proofs = [tree.prove_inclusion(i + 1, total) for i in indexes[: len(theirs_incl)]]
        start = time.perf_counter()
        for i, proof in zip(indexes, their_proofs, strict=False):
            pymerkle.verify_inclusion(tree.get_leaf(i + 1), their_state, proof)
        theirs_verify = len(their_proofs) / max(time.perf_counter() - start, 1e-9)
        print(
            f"inclusion proofs verified: vitaltrail {ours_verify:,.0f}/s, pymerkle {theirs_verify:,.0f}/s"
        )
        log.close()
        db.close()
        tree.close()
        report["appends_per_s"] = {"vitaltrail": ours_append, "pymerkle": theirs_append}
        report["inclusion_ms"] = {
            "vitaltrail": summary(ours_incl),
            "pymerkle": summary(theirs_incl),
        }
        report["consistency_ms"] = {
            "vitaltrail": summary(ours_cons),
            "pymerkle": summary(theirs_cons),
        }
        report["verify_per_s"] = {"vitaltrail": ours_verify, "pymerkle": theirs_verify}
        report["disk_bytes"] = {
            "vitaltrail": _size(work, "vitaltrail.db"),
            "pymerkle": _size(work, "pymerkle.db"),
        }
    report["ratios"] = {
        "appends_vs_sha256_ceiling": ours_append / report["ceilings"]["sha256_per_s"],
        "appends_vs_sqlite_ceiling": ours_append / report["ceilings"]["sqlite_rows_per_s"],
        "appends_vs_pymerkle": ours_append / theirs_append,
    }
    print(json.dumps(report["ratios"]))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _size(work: Path, name: str) -> int:
    return sum(p.stat().st_size for p in work.glob(name + "*"))

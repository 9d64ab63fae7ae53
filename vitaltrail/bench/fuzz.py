"""`vitaltrail bench fuzz`: hostile inputs through every decoder of outside bytes; 0 may escape.

The inputs (vitaltrail.bench.fuzz_inputs) are shared round-robin among the decoders
(vitaltrail.bench.fuzz_corpus). For each input the decoder must return, or raise the one
error it documents; the ingest checks and ``verify_bundle`` must always return a verdict.
Anything else is an *escaped* exception, counted by type, and the command fails. Documented
errors that only the decoder boundary's net caught (devices.boundary) are counted apart:
they are not failures, but each one points at a check worth writing where it happened.

Seeded: ``--seed`` makes a run repeatable, input for input. Needs no test dependency.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from devices.boundary import caught_at_boundary
from vitaltrail.bench.fuzz_corpus import Target, Verdict, targets
from vitaltrail.bench.fuzz_inputs import hostile_input

MAX_EXAMPLES = 5  # escaped inputs kept per (decoder, exception type) for the report


@dataclass
class DecoderStats:
    inputs: int = 0
    accepted: int = 0
    refused: int = 0  # the documented error, or a verdict saying no
    verdicts: Counter[str] = field(default_factory=Counter)  # why, for targets that never raise
    boundary: Counter[str] = field(default_factory=Counter)  # refused by the net, by cause
    escaped: Counter[str] = field(default_factory=Counter)  # by exception type
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "accepted": self.accepted,
            "refused": self.refused,
            "refused_by_the_net": dict(self.boundary),
            "verdicts": dict(self.verdicts),
            "escaped": dict(self.escaped),
            "us_per_input": round(self.seconds / self.inputs * 1e6, 1) if self.inputs else None,
        }


@dataclass
class FuzzResult:
    inputs: int
    seed: int
    seconds: float
    decoders: dict[str, DecoderStats]
    examples: list[dict[str, str]]

    @property
    def escaped(self) -> int:
        return sum(sum(s.escaped.values()) for s in self.decoders.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "rate_per_s": round(self.inputs / self.seconds) if self.seconds else None,
            "escaped": self.escaped,
            "decoders": {name: s.to_json() for name, s in self.decoders.items()},
            "examples": self.examples,
            "machine": _machine(),
        }


def _machine() -> dict[str, Any]:
    """What the figures were taken on; the load average says how shared the cores were."""
    cpu = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg(),
    }


def run_one(target: Target, data: bytes, stats: DecoderStats) -> str | None:
    """Run one input; the name of the exception that escaped, if one did."""
    stats.inputs += 1
    try:
        result = target.decode(data)
    except target.errors as exc:
        stats.refused += 1
        if caught_at_boundary(exc):
            stats.boundary[type(exc.__cause__).__name__] += 1
        return None
    except Exception as exc:  # the failure this benchmark exists to find
        stats.escaped[type(exc).__name__] += 1
        return type(exc).__name__
    if isinstance(result, Verdict) and result.refused is not None:
        stats.refused += 1
        stats.verdicts[result.refused] += 1
    else:
        stats.accepted += 1
    return None


@contextlib.contextmanager
def _quiet_refusals() -> Iterator[None]:
    """The decoders log some refusals (a replayed client assertion) at WARNING: expected here,
    and a million of them would bury the report."""
    logger = logging.getLogger("vitaltrail")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def fuzz(inputs: int, seed: int, progress: bool = False) -> FuzzResult:
    with _quiet_refusals():
        return _fuzz(inputs, seed, progress)


def _fuzz(inputs: int, seed: int, progress: bool) -> FuzzResult:
    rng = random.Random(seed)
    chosen = targets()
    stats = {t.name: DecoderStats() for t in chosen}
    examples: list[dict[str, str]] = []
    kept: Counter[tuple[str, str]] = Counter()
    started = time.perf_counter()
    for i in range(inputs):
        target = chosen[i % len(chosen)]
        data = hostile_input(rng, target)
        t0 = time.perf_counter()
        escaped = run_one(target, data, stats[target.name])
        stats[target.name].seconds += time.perf_counter() - t0
        if escaped is not None and kept[(target.name, escaped)] < MAX_EXAMPLES:
            kept[(target.name, escaped)] += 1
            examples.append({"decoder": target.name, "exception": escaped, "input": _b64(data)})
        if progress and i and i % 100_000 == 0:
            print(f"  {i:,} inputs, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return FuzzResult(inputs, seed, time.perf_counter() - started, stats, examples)


def _b64(data: bytes) -> str:
    return base64.b64encode(data[:4096]).decode()


def report(result: FuzzResult) -> str:
    lines = [
        f"{'decoder':<22}{'inputs':>10}{'accepted':>10}{'refused':>10}{'net':>6}"
        f"{'escaped':>9}{'µs/input':>10}"
    ]
    for name, s in result.decoders.items():
        per = s.seconds / s.inputs * 1e6 if s.inputs else 0.0
        lines.append(
            f"{name:<22}{s.inputs:>10,}{s.accepted:>10,}{s.refused:>10,}"
            f"{sum(s.boundary.values()):>6,}{sum(s.escaped.values()):>9,}{per:>10.1f}"
        )
    for name, s in result.decoders.items():
        if s.verdicts:
            top = ", ".join(f"{why} {n:,}" for why, n in s.verdicts.most_common(6))
            lines.append(f"  {name} refused: {top}")
        for cause, n in s.boundary.most_common():
            lines.append(f"  net: {name}: {n:,} x {cause}")
        for exc, n in s.escaped.most_common():
            lines.append(f"  ESCAPED: {name}: {n:,} x {exc}")
    rate = result.inputs / result.seconds if result.seconds else 0.0
    lines.append(
        f"{result.inputs:,} inputs in {result.seconds:.1f} s ({rate:,.0f}/s, seed {result.seed});"
        f" exceptions escaped: {result.escaped}"
    )
    return "\n".join(lines)


def run_bench_fuzz(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"fuzzing {args.inputs:,} inputs through every decoder of outside bytes (seed {seed})")
    result = fuzz(args.inputs, seed, progress=True)
    print(report(result))
    if args.output is not None:
        args.output.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 1 if result.escaped else 0

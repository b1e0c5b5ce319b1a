"""The benchmark harness: a registry of cases, an interleaved runner, and result rows.

A *case* pits one subject (a relaystore operation) against peers doing the same work. Every
contender is an async context manager that prepares its store and yields ``op(i)``. The runner
enters all of them, then times them in rotating turns, a tenth of a round at a time, so machine
noise hits everyone alike; a ratio is paired per round and its median over the rounds reported,
which resists drifts in background load. No library pairs peers like this; the statistics are
the stdlib's, the console tables rich's. How to add a case: benchmarks/README.md.
"""

from __future__ import annotations

import fnmatch
import gc
import statistics
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table

Op = Callable[[int], Awaitable[object]]
"""One timed operation; the argument is a running index, unique per contender."""

Setup = Callable[[], AbstractAsyncContextManager[Op]]
"""Prepares a contender's store (untimed) and yields its operation."""

Cleanup = Callable[[], Awaitable[None]]
"""Deletes something a case created outside its temp dir (a Redis prefix, a PostgreSQL schema)."""

Facts = dict[str, dict[str, Any]]
"""Per contender label, the facts its setup recorded (e.g. ``{"lost updates": 3}``)."""

Check = Callable[[Facts], tuple[bool, str]]
"""A verdict on the facts of a case that is not a speed ratio: ``(met, what was checked)``."""


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A goal on the subject/peer ops-per-second ratio, e.g. "≥ 1.5×"."""

    min_ratio: float
    text: str
    time_based: bool = False  # stated on time per op, so tables also show the time ratio

    @classmethod
    def at_least(cls, ratio: float) -> Target:
        """The subject must do at least ``ratio`` times the peer's ops/s."""
        return cls(ratio, f"≥ {ratio:g}×")

    @classmethod
    def time_at_most(cls, ratio: float) -> Target:
        """The subject's time per op may be at most ``ratio`` times the peer's (ops ratio ≥ 1/ratio)."""
        return cls(1 / ratio, f"time ≤ {ratio:g}×", time_based=True)

    def met(self, ratio: float) -> bool:
        return ratio >= self.min_ratio


# --------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Backend:
    """How to open a fresh relaystore of one kind, and why it might be unavailable.

    ``fresh_url(tmp_dir, label)`` must return a URL whose store starts empty (a new file, a new
    Redis prefix or Postgres schema…). ``skip_if()`` returns a reason to skip, or None.
    ``cleanup(url)`` deletes exactly what a store at such a URL created outside the temp dir.
    ``fill_options`` are connect options that make untimed prefills fast (durability off).
    """

    name: str
    fresh_url: Callable[[Path, str], str]
    skip_if: Callable[[], str | None] = lambda: None
    cleanup: Callable[[str], Awaitable[None]] | None = None
    fill_options: dict[str, str] = field(default_factory=dict)


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def requires(module: str, port: int | None = None) -> Callable[[], str | None]:
    """A ``skip_if`` for a backend needing an importable module and, optionally, a local port."""

    def reason() -> str | None:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            return f"{module} is not available"
        if port is not None and not _port_open(port):
            return f"nothing listens on 127.0.0.1:{port} (run `make services`)"
        return None

    return reason


REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The shared servers. Every case isolates itself under a unique key prefix or schema."""


RUN_TOKEN = uuid.uuid4().hex[:6]
"""Starts the hex of every name this process makes, so a run's leftovers can be told apart from
other runs' (tests/test_bench_quick.py checks that none survive); recorded in the results file."""


def unique_name(label: str, sep: str = "_", width: int = 24) -> str:
    """``bench<sep><slug of label><sep><RUN_TOKEN + 6 hex>``: unique per call, so runs never share state."""
    slug = _slug(label)[:width].strip("-").replace("-", sep)
    return f"bench{sep}{slug}{sep}{RUN_TOKEN}{uuid.uuid4().hex[:6]}"


def _redis_url(_tmp: Path, label: str) -> str:
    # The trailing ":" ends the prefix, so no other prefix can start with this one.
    return f"{REDIS_URL}?prefix={unique_name(label, ':')}:"


async def drop_redis_prefix(prefix: str) -> None:
    """UNLINK every key under ``prefix`` (SCAN, never FLUSH: the server is shared)."""
    from redis.asyncio import Redis

    escaped = "".join("\\" + c if c in "\\*?[]" else c for c in prefix)
    client = Redis.from_url(REDIS_URL)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=escaped + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


async def _cleanup_redis(url: str) -> None:
    await drop_redis_prefix(parse_qs(urlsplit(url).query)["prefix"][0])


def _pg_url(_tmp: Path, label: str) -> str:
    return f"{PG_URL}?schema={unique_name(label.lower())}"


async def drop_pg_schema(schema: str) -> None:
    """``DROP SCHEMA … CASCADE`` of one schema this run created."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def _cleanup_pg(url: str) -> None:
    await drop_pg_schema(parse_qs(urlsplit(url).query)["schema"][0])


BACKENDS: dict[str, Backend] = {
    "memory": Backend("memory", lambda _tmp, _label: "memory://"),
    "sqlite": Backend(
        "sqlite",
        lambda tmp, label: f"sqlite:///{tmp / _slug(label)}.db",
        fill_options={"synchronous": "off"},
    ),
    "redis": Backend("redis", _redis_url, requires("relaystore.backends.redis", 6379), _cleanup_redis),
    "postgres": Backend("postgres", _pg_url, requires("relaystore.backends.postgres", 5432), _cleanup_pg),
    "file": Backend(
        "file",
        lambda tmp, label: f"file://{tmp / _slug(label)}",
        requires("relaystore.backends.filesystem"),
        fill_options={"fsync": "false"},
    ),
}


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower() or "x"


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Contender:
    """One side of a case: a label for the tables and its setup.

    ``facts`` is for figures that are not timings (lost updates, final counts): the setup fills
    it, typically after the timed part, and the report prints it next to the case.
    """

    label: str
    setup: Setup
    facts: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Matchup:
    """What a case function returns: the relaystore subject and the peers it is compared with."""

    subject: Contender
    peers: list[Contender]


@dataclass
class Context:
    """What a case function gets: the run mode, the case's backend, and a private temp dir."""

    quick: bool
    backend: str
    tmp_dir: Path
    n: int
    cleanups: list[Cleanup] = field(default_factory=list)

    def store_url(self, label: str) -> str:
        """A URL of a fresh, empty relaystore of this case's backend, deleted after the case."""
        backend = BACKENDS[self.backend]
        url = backend.fresh_url(self.tmp_dir, label)
        if backend.cleanup is not None:
            drop = backend.cleanup
            self.defer(lambda: drop(url))
        return url

    def defer(self, cleanup: Cleanup) -> None:
        """Run ``cleanup()`` after the case, even if it fails (a peer's own schema, say)."""
        self.cleanups.append(cleanup)

    @property
    def fill_options(self) -> dict[str, str]:
        """``connect`` options for fast untimed prefills on this backend (durability off)."""
        return dict(BACKENDS[self.backend].fill_options)

    def path(self, name: str) -> Path:
        """A file path inside the case's temp dir (for peers' own databases)."""
        return self.tmp_dir / name


@dataclass(frozen=True)
class Case:
    """A registered benchmark. ``id`` is ``group/name [backend]``; the options: :meth:`Registry.case`."""

    group: str
    name: str
    build: Callable[[Context], Matchup]
    backend: str
    n: int = 1000
    quick_n: int = 200
    repeats: int = 7
    quick_repeats: int = 5
    unit: str = "ops/s"
    in_quick: bool = True
    targets: dict[str, Target] = field(default_factory=dict)
    skip_if: Callable[[], str | None] = lambda: None
    note: str = ""
    ops_per_call: int = 1
    check: Check | None = None
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name} [{self.backend}]"

    def skip_reason(self) -> str | None:
        return BACKENDS[self.backend].skip_if() or self.skip_if()


class Registry:
    """An ordered set of cases. The module-level :data:`REGISTRY` is the one ``python -m benchmarks`` runs."""

    def __init__(self) -> None:
        self.cases: list[Case] = []

    def case(
        self,
        group: str,
        name: str,
        *,
        backends: Iterable[str] = ("sqlite",),
        n_scale: dict[str, float] | None = None,
        quick_backends: Iterable[str] | None = None,
        **options: Any,
    ) -> Callable[[Callable[[Context], Matchup]], Callable[[Context], Matchup]]:
        """Register ``build(ctx) -> Matchup`` once per backend; ``options`` are :class:`Case` fields.

        ``n`` operations are timed per round (``quick_n`` with ``--quick``, default ``n // 5``); each
        contender runs ``repeats`` rounds (``quick_repeats``). ``targets`` maps a peer label to the
        ratio goal shown as ✔/✘. ``in_quick=False`` leaves the case out of ``--quick``.
        ``ops_per_call``: each ``op(i)`` does this many operations (a burst of concurrent writers),
        so the figures are operations per second, not calls. ``check(facts)`` judges the facts the
        contenders recorded. ``reasons`` maps a peer label (or ``"check"``) to the one-line known
        cause printed when that target is missed. ``unit`` labels non-ops figures, ``note`` is
        printed under the table, ``skip_if()`` returns a reason to skip. ``n_scale`` multiplies N
        (and quick N) on the named backends, for those whose operations are much slower;
        ``quick_backends`` limits which backends ``--quick`` runs (default: all of them).
        """

        backends_ = list(backends)
        quick_set = set(backends_ if quick_backends is None else quick_backends)
        n = options.pop("n", 1000)
        quick_n = options.pop("quick_n", None) or max(1, n // 5)
        in_quick = options.pop("in_quick", True)

        def register(build: Callable[[Context], Matchup]) -> Callable[[Context], Matchup]:
            for backend in backends_:
                if backend not in BACKENDS:
                    raise ValueError(f"unknown backend {backend!r}; known: {sorted(BACKENDS)}")
                scale = (n_scale or {}).get(backend, 1.0)
                sizes = {"n": max(1, round(n * scale)), "quick_n": max(1, round(quick_n * scale))}
                quick = in_quick and backend in quick_set
                self.cases.append(Case(group, name, build, backend, **sizes, in_quick=quick, **options))
            return build

        return register

    def select(self, *, quick: bool, only: str | None) -> list[Case]:
        """Cases for this run: ``only`` is a glob (``*save*``) or a case-insensitive substring."""
        chosen = [c for c in self.cases if c.in_quick or not quick]
        if only:
            chosen = [c for c in chosen if matches(c.id, only)]
        return sorted(chosen, key=lambda c: GROUP_ORDER.index(c.group) if c.group in GROUP_ORDER else 99)


def matches(case_id: str, pattern: str) -> bool:
    """A case-insensitive substring (so an id copied from ``--list`` works, brackets and all) or a glob."""
    lowered, pattern = case_id.lower(), pattern.lower()
    return pattern in lowered or (any(ch in pattern for ch in "*?[") and fnmatch.fnmatch(lowered, pattern))


GROUP_ORDER = ["checkpoints", "langgraph", "agent loop", "outputs", "http", "adaptive", "scaling"]
"""Report order of groups; groups not listed follow, in registration order."""

REGISTRY = Registry()
case = REGISTRY.case


# --------------------------------------------------------------------------- results


@dataclass
class Measurement:
    """One contender's batches in one case."""

    label: str
    role: str  # "subject" or "peer"
    ops_per_s: list[float]  # one per repeat, in repeat order
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.ops_per_s)


@dataclass
class Ratio:
    """Subject ops/s over one peer's, paired per repeat."""

    peer: str
    per_repeat: list[float]
    target: str | None = None
    target_min: float | None = None
    time_based: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.per_repeat)

    @property
    def text(self) -> str:
        """``1.23× (1.01–1.40)``: the median paired ratio and its min–max over the rounds."""
        return f"{self.median:.2f}× ({min(self.per_repeat):.2f}–{max(self.per_repeat):.2f})"

    @property
    def median_round(self) -> int:
        """The round whose paired ratio is the median (with an even count, the one nearest to it)."""
        return min(range(len(self.per_repeat)), key=lambda k: abs(self.per_repeat[k] - self.median))

    @property
    def met(self) -> bool | None:
        """Whether the median meets the target (None when the pair has no target)."""
        return None if self.target_min is None else self.median >= self.target_min

    @property
    def within_noise(self) -> bool:
        """True when the target lies inside the repeats' min–max: the verdict could flip on a rerun."""
        return self.target_min is not None and min(self.per_repeat) <= self.target_min <= max(self.per_repeat)


@dataclass
class CaseResult:
    """Everything one case produced; ``skipped`` holds the reason when it did not run."""

    id: str
    group: str
    name: str
    backend: str
    unit: str
    n: int
    repeats: int
    note: str = ""
    subject: Measurement | None = None
    peers: list[Measurement] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None  # the case raised: nothing was measured
    check: dict[str, Any] | None = None  # {"met": bool, "text": str} from the case's check
    reasons: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A plain dict with medians and spreads spelled out, for the results file."""
        data = asdict(self)
        for m in [data["subject"], *data["peers"]] if data["subject"] else []:
            m["median"] = statistics.median(m["ops_per_s"])
            m["min"], m["max"] = min(m["ops_per_s"]), max(m["ops_per_s"])
        for r, ratio in zip(data["ratios"], self.ratios, strict=True):
            r.update(
                median=ratio.median,
                min=min(ratio.per_repeat),
                max=max(ratio.per_repeat),
                met=ratio.met,
                within_noise=ratio.within_noise,
            )
        return data


# --------------------------------------------------------------------------- running


SLICES = 10
"""Each repeat's batch of N is cut into this many slices, and contenders alternate slice by slice,
so a burst of load from other processes lands on every contender rather than on one batch."""


async def _time_slice(op: Op, start: int, n: int) -> int:
    """Nanoseconds taken by ``op(start) … op(start + n - 1)``."""
    began = time.perf_counter_ns()
    for i in range(start, start + n):
        await op(i)
    return time.perf_counter_ns() - began


def _slice_sizes(n: int) -> list[int]:
    parts = min(SLICES, n)
    return [n // parts + (1 if k < n % parts else 0) for k in range(parts)]


async def _warm_up(op: Op, n: int) -> int:
    """Run a few untimed ops (caches, lazy setup, JIT-less but import-heavy first calls)."""
    count = max(1, min(n // 10, 20))
    for i in range(count):
        await op(i)
    return count


async def run_case(case: Case, *, quick: bool, tmp_root: Path | None = None) -> CaseResult:
    """Run one case: set every contender up, then time them in rotating turns.

    A case that raises is reported as failed (the run goes on), and whatever it created on the
    shared servers is deleted either way.
    """
    n, repeats = (case.quick_n, case.quick_repeats) if quick else (case.n, case.repeats)
    result = CaseResult(
        case.id, case.group, case.name, case.backend, case.unit, n, repeats, case.note, reasons=case.reasons
    )
    reason = case.skip_reason()
    if reason:
        result.skipped = reason
        return result
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="relaystore-bench-", dir=tmp_root) as tmp:
            ctx = Context(quick=quick, backend=case.backend, tmp_dir=Path(tmp), n=n)
            try:
                matchup, samples = await _measure(case, ctx, n, repeats)
            finally:
                await _clean_up(ctx)
    except Exception as exc:  # one broken case must not sink a 20-minute run
        traceback.print_exc()
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.seconds = time.monotonic() - began
    _fill_result(result, case, matchup, samples)
    return result


async def _measure(case: Case, ctx: Context, n: int, repeats: int) -> tuple[Matchup, list[list[float]]]:
    matchup = case.build(ctx)
    contenders = [matchup.subject, *matchup.peers]
    async with AsyncExitStack() as stack:
        ops = [await stack.enter_async_context(c.setup()) for c in contenders]
        samples = await _interleave(ops, n, repeats)
    scale = case.ops_per_call
    return matchup, [[x * scale for x in per_repeat] for per_repeat in samples]


async def _clean_up(ctx: Context) -> None:
    """Run the deferred cleanups, newest first; a failing one is reported, not raised."""
    for cleanup in reversed(ctx.cleanups):
        try:
            await cleanup()
        except Exception as exc:
            print(f"  cleanup failed: {type(exc).__name__}: {exc}")


def _fill_result(result: CaseResult, case: Case, matchup: Matchup, samples: list[list[float]]) -> None:
    subject = matchup.subject
    result.subject = Measurement(subject.label, "subject", samples[0], dict(subject.facts))
    result.peers = [
        Measurement(p.label, "peer", s, dict(p.facts))
        for p, s in zip(matchup.peers, samples[1:], strict=True)
    ]
    result.ratios = [_ratio(samples[0], peer, case.targets.get(peer.label)) for peer in result.peers]
    if case.check is not None:
        met, text = case.check({m.label: m.facts for m in [result.subject, *result.peers]})
        result.check = {"met": met, "text": text}


async def _interleave(ops: list[Op], n: int, repeats: int) -> list[list[float]]:
    """``samples[contender][repeat]`` in ops/s. Within a repeat the contenders take turns slice by
    slice; the order of turns rotates, so no one always runs first (or right after a GC).

    Everything alive after the set-up (prefills, earlier cases' leftovers) is frozen out of the
    garbage collector while timing: otherwise a full collection, triggered by whichever
    contender happens to allocate at that moment, walks hundreds of MB that no contender made.
    """
    next_index = [await _warm_up(op, n) for op in ops]
    gc.collect()
    gc.freeze()
    try:
        return await _timed_repeats(ops, n, repeats, next_index)
    finally:
        gc.unfreeze()


async def _timed_repeats(ops: list[Op], n: int, repeats: int, next_index: list[int]) -> list[list[float]]:
    samples: list[list[float]] = [[0.0] * repeats for _ in ops]
    turn = 0
    for rep in range(repeats):
        elapsed = [0] * len(ops)
        gc.collect()  # so a collection owed by earlier work is not charged to this repeat
        for size in _slice_sizes(n):
            for k in range(len(ops)):
                who = (turn + k) % len(ops)
                elapsed[who] += await _time_slice(ops[who], next_index[who], size)
                next_index[who] += size
            turn += 1
        for who, ns in enumerate(elapsed):
            samples[who][rep] = n * 1e9 / max(ns, 1)
    return samples


def _ratio(subject: list[float], peer: Measurement, target: Target | None) -> Ratio:
    paired = [s / p for s, p in zip(subject, peer.ops_per_s, strict=True)]
    if target is None:
        return Ratio(peer.label, paired)
    return Ratio(peer.label, paired, target.text, target.min_ratio, target.time_based)


async def run_all(
    cases: list[Case],
    *,
    quick: bool,
    progress: Callable[[Any], None] | None = None,
    tmp_root: Path | None = None,
) -> list[CaseResult]:
    """Run ``cases`` one after another, reporting each as it finishes (default: on the console)."""
    show = progress or console().print
    results = []
    for c in cases:
        show(f"▶ {c.id} …")
        result = await run_case(c, quick=quick, tmp_root=tmp_root)
        show(describe(result))
        results.append(result)
    return results


def console() -> Console:
    """A rich console; piped, it is wide enough that the tables are not wrapped at 80 columns."""
    out = Console(highlight=False, markup=False)  # ids hold "[sqlite]", which is not markup
    if not out.is_terminal:
        out.width = 160
    return out


PAIRING = (
    "ratio = relaystore ÷ peer ops/s within one round (their slices interleaved), median (min–max) over "
    "rounds; it need not equal the quotient of the two medians. 'median round' is the round it comes from."
)


def describe(result: CaseResult) -> RenderableType:
    """For the console: each contender's ops/s and, per peer, the paired ratio and the round behind it."""
    if result.skipped or result.error:
        return f"  skipped: {result.skipped}" if result.skipped else f"  FAILED: {result.error}"
    assert result.subject is not None
    subject = result.subject
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, caption=PAIRING if result.peers else None)
    table.caption_justify = "left"
    table.add_column("contender")
    table.add_column(f"{result.unit}, median (min–max) of {result.repeats} rounds", justify="right")
    table.add_column("ratio, paired per round", justify="right")
    table.add_column(f"median round: {subject.label} / peer", justify="right")
    table.add_column("target")
    table.add_row(subject.label, _figures(subject.ops_per_s))
    for peer, ratio in zip(result.peers, result.ratios, strict=True):
        rnd = ratio.median_round
        verdict = "" if ratio.met is None else f"{ratio.target} {tick(ratio.met)}"
        pair = f"{subject.ops_per_s[rnd]:,.0f} / {peer.ops_per_s[rnd]:,.0f}"
        table.add_row(peer.label, _figures(peer.ops_per_s), ratio.text, pair, verdict)
    lines = [f"  {m.label}: {format_facts(m.facts)}" for m in [subject, *result.peers] if m.facts]
    if result.check is not None:
        lines.append(f"  check: {result.check['text']} {tick(result.check['met'])}")
    return Group(table, *lines, f"  ({result.seconds:.1f} s)")


def _figures(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def tick(met: bool) -> str:
    return "✔" if met else "✘"


def format_facts(facts: dict[str, Any]) -> str:
    """``lost updates 0, increments 1,200``: numbers with thousands separators."""
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in facts.items())

"""Turning results into files: the JSON record, docs/benchmarks.md, PNG plots, and comparisons."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.harness import CaseResult, Ratio, format_facts, tick

LIBRARIES = (
    "relaystore",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "aiosqlite",
    "pydantic",
    "ormsgpack",
    "psycopg",
    "redis",
)


# --------------------------------------------------------------------------- environment


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Facts that make two runs comparable (or explain why they are not)."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "libraries": {name: v for name in LIBRARIES if (v := _version(name))},
    }


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports ru_maxrss in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mb() -> float | None:
    """The process's current resident memory in MiB, via psutil when installed."""
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.Process().memory_info().rss / 2**20, 1)


# --------------------------------------------------------------------------- JSON record


def save_json(
    path: Path, env: dict[str, Any], results: list[CaseResult], mode: str, extras: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": 1,
        "mode": mode,
        "environment": env,
        "extras": extras,
        "cases": [r.to_json() for r in results],
    }
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- markdown


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _spread(values: list[float]) -> str:
    return f"{_num(min(values))}–{_num(max(values))}"


def _target_cell(ratio: Ratio) -> str:
    """``≥ 1.5× ✘``; time targets also show the time ratio; a verdict inside the noise says so."""
    if ratio.met is None:
        return ""
    cell = f"{ratio.target} {tick(ratio.met)}"
    if ratio.time_based:
        cell += f" (time {1 / ratio.median:.2f}×)"
    return cell + (" ~noise" if ratio.within_noise else "")


def _case_rows(r: CaseResult) -> list[str]:
    assert r.subject is not None
    median, spread = _num(r.subject.median), _spread(r.subject.ops_per_s)
    subject = f"| {r.name} [{r.backend}] | {r.subject.label} | **{median}** ({spread}) "
    if not r.peers:
        return [subject + "| — | | | |"]
    return [
        subject + f"| {peer.label} | {_num(peer.median)} ({_spread(peer.ops_per_s)}) "
        f"| **{ratio.median:.2f}×** ({min(ratio.per_repeat):.2f}–{max(ratio.per_repeat):.2f}) "
        f"| {_target_cell(ratio)} |"
        for peer, ratio in zip(r.peers, r.ratios, strict=True)
    ]


def _case_notes(r: CaseResult) -> list[str]:
    """The bullet under a group's table: N, unit, the case's note, facts and its check."""
    assert r.subject is not None
    unit = "" if r.unit == "ops/s" else f" Unit: {r.unit}."
    lines = [f"- **{r.name}** [{r.backend}], N={r.n} × {r.repeats} repeats.{unit} {r.note}".rstrip()]
    for m in [r.subject, *r.peers]:
        if m.facts:
            lines.append(f"  - {m.label}: {format_facts(m.facts)}")
    if r.check is not None:
        lines.append(f"  - check: {r.check['text']} {tick(r.check['met'])}")
    return lines


def _misses(results: list[CaseResult]) -> list[str]:
    """One bullet per missed target: the measured ratio and the case's recorded reason."""
    lines = []
    for r in results:
        for ratio in r.ratios:
            if ratio.met is False:
                measured = ratio.text
                if ratio.time_based:
                    measured += f", time {1 / ratio.median:.2f}×"
                reason = reason_for(r, ratio.peer)
                where = f"**{r.name}** [{r.backend}] vs {ratio.peer}"
                lines.append(f"- ✘ {where}: {measured}, target {ratio.target}. {reason}")
        if r.check is not None and not r.check["met"]:
            reason = reason_for(r, "check")
            lines.append(f"- ✘ **{r.name}** [{r.backend}] check: {r.check['text']}. {reason}")
    return lines


def reason_for(r: CaseResult, key: str) -> str:
    """The case's reason for a miss on ``key`` (a peer label or "check"), per backend if given."""
    return r.reasons.get(f"{key} [{r.backend}]") or r.reasons.get(key) or "No reason recorded yet."


def _tally(results: list[CaseResult]) -> str:
    verdicts = [ratio.met for r in results for ratio in r.ratios if ratio.met is not None]
    verdicts += [r.check["met"] for r in results if r.check is not None]
    failed = [r.name for r in results if r.error]
    text = f"**Targets:** {sum(verdicts)} met ✔, {len(verdicts) - sum(verdicts)} missed ✘"
    return text + (f"; {len(failed)} case(s) failed to run" if failed else "") + "."


def markdown(
    env: dict[str, Any],
    results: list[CaseResult],
    *,
    mode: str,
    command: str,
    extras: dict[str, Any],
    plots: list[Path],
    md_path: Path,
) -> str:
    """The whole docs/benchmarks.md page."""
    libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items())
    lines = [
        "# Benchmarks",
        "",
        f"_Generated by `{command}` ({mode} run) on {env['date']}. Do not edit by hand._",
        "",
        f"- **Machine:** {env['cpu_count']} × {env['cpu_model']}, {env['platform']}; "
        f"load average at start {env['load_avg']}",
        f"- **Software:** Python {env['python']}, SQLite {env['sqlite']}; {libs}",
        f"- **Memory:** the benchmark process peaked at {extras.get('peak_rss_mb', '?')} MiB RSS; "
        f"load average at the end {extras.get('load_avg_end', '?')}; "
        f"the run took {extras.get('seconds', '?')} s",
        f"- {_tally(results)} Each miss is listed with its reason [at the end](#targets-missed).",
        "",
        "How to read this: each case times the relaystore operation and its peers in the same process; "
        "per repeat every contender runs N operations, in slices of N/10 taken in rotating turns; "
        "objects alive after the set-up are frozen out of the garbage collector while timing "
        "(`gc.freeze`), so no contender pays for walking another's prefill. "
        "Figures are the median ops/s over the repeats with the min–max in brackets; the ratio is "
        "relaystore ÷ peer ops/s, paired per repeat (median, min–max), so above 1× relaystore is faster; "
        "being paired, it need not equal the quotient of the two median ops/s beside it. "
        "A target marked ~noise lies inside the repeats' min–max ratio: a rerun could flip it. "
        "The machine is shared, so compare ratios, not absolute numbers, between runs. "
        "Redis and PostgreSQL cases run on the shared local servers, each in its own key prefix or "
        "schema, deleted afterwards.",
        "",
    ]
    for group in dict.fromkeys(r.group for r in results):
        lines += _group_section(group, [r for r in results if r.group == group])
    lines += _learning_section(extras.get("learning") or {})
    lines += _memory_section(extras.get("memory") or {})
    lines += ["## Targets missed", "", *(_misses(results) or ["None."]), ""]
    for plot in plots:
        lines += [f"![{plot.stem}]({os.path.relpath(plot, md_path.parent)})", ""]
    return "\n".join(lines)


GROUP_INTROS = {
    "langgraph": "LangGraph's saver API: RelaySaver (relaystore behind `BaseCheckpointSaver`) against "
    "the native AsyncSqliteSaver / AsyncPostgresSaver, both driven by the same code "
    "(`benchmarks/cases/langgraph.py`). Ratios above 1× mean RelaySaver is faster.",
    "agent loop": "LangGraph agent loop, end to end (`benchmarks/cases/langgraph_loop.py`): a real "
    "`StateGraph` (think ⇄ tool, 12 rounds, a `messages` list with a reducer, plain or as a "
    "`DeltaChannel`) on 8 concurrent threads with `durability='async'`, then `aget_state` and the "
    "full `aget_state_history` of each thread. RelaySaver against the native saver of the same "
    "backend; alone on redis and file. The ratio is native ÷ RelaySaver wall time (above 1× "
    "RelaySaver is faster). Facts come from one untimed, counted loop per contender "
    "(`benchmarks/peers/counting.py`): saver calls, statements / round trips per call (SQLite: "
    "statements / hops to a worker thread), bytes one loop leaves stored.",
    "http": "`relaystore serve` in front of a SQLite file, 16 concurrent clients, beside the same "
    "calls on a `sqlite://` store in this process (`benchmarks/cases/http.py`). The ratio against "
    "in-process is the cost of going over HTTP; no target.",
    "scaling": "Each operation on stores holding 1,000, 10,000, 100,000 and 1,000,000 records "
    "(`benchmarks/cases/scaling.py`, full run only; curves in `img/scaling.png`; "
    "`RELAYSTORE_BENCH_SCALING_MAX` caps the sizes). The ratio is ops/s on the largest store ÷ on a "
    "smaller one: 1× means the operation does not slow down as the store grows. The stores are "
    "filled in bulk in relaystore's own table layout, checked against a record written through the "
    "API and read back through the API before timing.",
}


def _group_section(group: str, results: list[CaseResult]) -> list[str]:
    intro = [GROUP_INTROS[group], ""] if group in GROUP_INTROS else []
    lines = [
        f"## {group}",
        "",
        *intro,
        "| case | relaystore | ops/s | peer | peer ops/s | ratio | target |",
        "|---|---|--:|---|--:|--:|---|",
    ]
    notes = []
    for r in results:
        if r.skipped or r.error:
            why = f"skipped: {r.skipped}" if r.skipped else f"failed: {r.error}"
            lines.append(f"| {r.name} [{r.backend}] | — | {why} | | | | |")
            continue
        lines += _case_rows(r)
        notes += _case_notes(r)
    return [*lines, "", *notes, ""]


def _learning_section(learning: dict[str, Any]) -> list[str]:
    if not learning:
        return []
    lines = ["## learning", ""]
    if "note" in learning:
        lines += [str(learning["note"]), ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in learning.items() if k != "note"]
    return [*lines, ""]


def _memory_section(memory: dict[str, Any]) -> list[str]:
    """Peak RSS of the full run's memory scenarios (benchmarks/memory.py)."""
    if not memory:
        return []
    lines = ["## memory", ""]
    if "error" in memory:
        return [*lines, f"Failed: {memory['error']}", ""]
    lines += [str(memory.get("note", "")), ""]
    lines += [
        "| scenario | RSS before (MB) | peak RSS (MB) | growth (MB) | seconds | check |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for row in memory.values():
        if not isinstance(row, dict) or "peak_rss_mb" not in row:
            continue
        check = row.get("check")
        verdict = f"{check['text']} {tick(check['met'])}" if check else ""
        lines.append(
            f"| {row['what']} | {row['rss_before_mb']} | {row['peak_rss_mb']} | **{row['growth_mb']}** "
            f"| {row['seconds']} | {verdict} |"
        )
    return [*lines, ""]


# --------------------------------------------------------------------------- plots


def _stored(label: str) -> int:
    """``"100,000 stored"`` -> 100000 (the scaling cases' contender labels)."""
    return int(label.split()[0].replace(",", ""))


def plot_scaling(results: list[CaseResult], path: Path) -> Path | None:
    """Median ops/s against records stored, one curve per operation, one panel per backend."""
    cases = [r for r in results if r.group == "scaling" and r.subject is not None and not r.error]
    if not cases:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(r.backend for r in cases))
    names = list(dict.fromkeys(r.name for r in cases))  # one color per operation in every panel
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 5), squeeze=False)
    for ax, backend in zip(axes[0], backends, strict=True):
        for r in (r for r in cases if r.backend == backend):
            points = sorted(
                (_stored(m.label), m.median, min(m.ops_per_s), max(m.ops_per_s))
                for m in [r.subject, *r.peers]
                if m is not None and m.label.endswith(" stored")
            )
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
            color = f"C{names.index(r.name) % 10}"
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=r.name, color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(backend)
        ax.set_xlabel("records stored")
        ax.set_ylabel("ops/s (median, min–max)")
        ax.grid(True, which="both", alpha=0.3)
    # One legend under the panels: inside them it hid parts of the curves.
    handles = [plt.Line2D([], [], color=f"C{k % 10}", marker="o") for k in range(len(names))]
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), fontsize=8)
    fig.suptitle("relaystore: each operation as the store grows (flat = does not slow down)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ratios(results: list[CaseResult], path: Path) -> Path | None:
    """A horizontal bar per (case, peer): the ratio, its spread, and the target as a tick."""
    rows = [
        (f"{r.name} [{r.backend}] / {ratio.peer}", ratio)
        for r in results
        if not r.skipped and not r.error and r.group != "scaling"  # scaling has its own plot
        for ratio in r.ratios
    ]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.2))
    y = list(range(len(rows)))[::-1]
    medians = [ratio.median for _, ratio in rows]
    errors = [
        [m - min(r.per_repeat) for m, (_, r) in zip(medians, rows, strict=True)],
        [max(r.per_repeat) - m for m, (_, r) in zip(medians, rows, strict=True)],
    ]
    colors = ["#4c9a2a" if r.met else "#c0392b" if r.met is False else "#7f8c8d" for _, r in rows]
    ax.barh(y, medians, xerr=errors, color=colors, capsize=3)
    for yy, (_, ratio) in zip(y, rows, strict=True):
        if ratio.target_min is not None:
            ax.plot([ratio.target_min] * 2, [yy - 0.4, yy + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, [label for label, _ in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("relaystore ops/s ÷ peer ops/s (log; black tick = target; green met, red missed)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- comparing runs


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Per-case, per-contender change of median ops/s and of ratios between two result files."""

    def index(doc: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float | None]]:
        out: dict[tuple[str, str], tuple[float, float | None]] = {}
        for c in doc["cases"]:
            if c.get("skipped") or not c.get("subject"):
                continue
            out[(c["id"], c["subject"]["label"])] = (c["subject"]["median"], None)
            for peer, ratio in zip(c["peers"], c["ratios"], strict=True):
                out[(c["id"], peer["label"])] = (peer["median"], ratio["median"])
        return out

    before, after = index(old), index(new)
    lines = []
    if old.get("mode") != new.get("mode"):
        lines.append(f"note: comparing a {old.get('mode')} run with a {new.get('mode')} run (different N)")
    lines += [f"{'case / contender':<70} {'old':>10} {'new':>10} {'change':>8}   ratio old → new"]
    for key in [k for k in after if k in before]:
        (o, o_ratio), (n, n_ratio) = before[key], after[key]
        ratio = f"{o_ratio:.2f}× → {n_ratio:.2f}×" if o_ratio and n_ratio else ""
        label = f"{key[0]} / {key[1]}"[:70]
        lines.append(f"{label:<70} {o:>10,.0f} {n:>10,.0f} {100 * (n / o - 1):>+7.1f}%   {ratio}")
    for key in after.keys() - before.keys():
        lines.append(f"{key[0]} / {key[1]}: new")
    for key in before.keys() - after.keys():
        lines.append(f"{key[0]} / {key[1]}: gone")
    return "\n".join(lines)

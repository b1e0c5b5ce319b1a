"""``python -m benchmarks``: run the cases, print them, write the results JSON, docs and plots.

python -m benchmarks                 # full run (< 20 min): latest.json, docs/benchmarks.md, plots
python -m benchmarks --quick         # small N and fewer repeats, for CI (< 2 min): partial.json
python -m benchmarks --only save     # cases whose id contains "save" (or a glob: '*load*2 KB*')
python -m benchmarks --list          # the registered cases and extras
python -m benchmarks --compare OLD.json NEW.json
python -m benchmarks --profile sqlite   # where a backend spends its time (sqlite or postgres)

Only a full run writes the committed artifacts (benchmarks/results/latest.json, docs/benchmarks.md,
docs/img/*.png). A --quick or --only run writes benchmarks/results/partial.json, and the docs or
plots only where --md-out / --img-dir name them.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import cases  # noqa: F401  (registers the cases)
from benchmarks.harness import REGISTRY, RUN_TOKEN, CaseResult, matches, run_all
from benchmarks.report import (
    compare,
    environment,
    load_json,
    markdown,
    peak_rss_mb,
    plot_ratios,
    plot_scaling,
    rss_mb,
    save_json,
)

ROOT = Path(__file__).resolve().parent.parent


RESULTS = ROOT / "benchmarks/results"
FULL_OUTPUTS = {
    "json_out": RESULTS / "latest.json",
    "md_out": ROOT / "docs/benchmarks.md",
    "img_dir": ROOT / "docs/img",
}
"""Where a full run writes; a partial run writes ``RESULTS / "partial.json"`` and only the docs asked for."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N, fewer repeats, quick subset")
    parser.add_argument("--only", metavar="PATTERN", help="substring or glob of case (and extra) ids to run")
    parser.add_argument("--json-out", type=Path, help="results file (default: latest.json / partial.json)")
    parser.add_argument("--md-out", type=Path, help="markdown page (default: docs/benchmarks.md, full runs)")
    parser.add_argument("--img-dir", type=Path, help="where the plots go (default: docs/img, full run only)")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    parser.add_argument("--list", action="store_true", help="list the cases and extras and exit")
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("OLD", "NEW"),
        help="print per-case changes between two results files and exit",
    )
    parser.add_argument("--profile", choices=["sqlite", "postgres"], help="run a backend diagnostic and exit")
    parser.add_argument("--n", type=int, default=2000, help="--profile: operations per measurement")
    parser.add_argument("--top", type=int, default=12, help="--profile sqlite: functions per cProfile table")
    args = parser.parse_args(argv)
    full = not args.quick and not args.only
    args.json_out = args.json_out or (FULL_OUTPUTS["json_out"] if full else RESULTS / "partial.json")
    for name in ("md_out", "img_dir"):
        if getattr(args, name) is None and full:
            setattr(args, name, FULL_OUTPUTS[name])
    return args


LEARNING_SIZES = {"quick": (100, 30), "full": (1000, 200)}
"""(from-scratch runs, incremental runs): incremental learning runs at ~10 runs/s, so it gets
fewer runs than the from-scratch relearn to keep the full run within its 20 minutes."""


async def learning_extras(quick: bool) -> dict[str, Any]:
    """Learning throughput on ``memory://`` (benchmarks/learning.py), shown as its own table."""
    from benchmarks.learning import bench_learning

    scratch, incremental = LEARNING_SIZES["quick" if quick else "full"]
    note = (
        f"Learning on `memory://`: incremental = one `learn` call per run over {incremental:,} runs; "
        f"from scratch = one `relearn` over {scratch:,} stored runs (same synthetic workload)."
    )
    return {"note": note, **await bench_learning(scratch, incremental_runs=incremental)}


async def memory_extras(_quick: bool) -> dict[str, Any]:
    """Peak RSS of list_runs of 10,000 runs and a 50 MB blob round trip (benchmarks/memory.py)."""
    from benchmarks.memory import bench_memory

    return await bench_memory()


EXTRAS = {"extra/learning": (learning_extras, True), "extra/memory": (memory_extras, False)}
"""Measurements outside the case tables (no peer, no ratio): id -> (run(quick), in --quick)."""


def select_extras(quick: bool, only: str | None) -> list[str]:
    chosen = [e for e, (_, in_quick) in EXTRAS.items() if in_quick or not quick]
    return [e for e in chosen if not only or matches(e, only)]


async def run_extras(names: list[str], quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        print(f"▶ {name} …")
        try:
            out[name.split("/")[1]] = await EXTRAS[name][0](quick)
        except Exception as exc:  # a broken extra must not sink the whole run
            out[name.split("/")[1]] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def write_outputs(
    args: argparse.Namespace,
    results: list[CaseResult],
    extras: dict[str, Any],
    env: dict[str, Any],
    command: str,
) -> None:
    mode = "quick" if args.quick else "full"
    markdown_ = functools.partial(markdown, env, results, mode=mode, command=command, extras=extras)
    save_json(args.json_out, env, results, mode, extras)
    print(f"results: {args.json_out}")
    if args.no_docs:
        return
    plots: list[Path] = []
    if args.img_dir is not None:
        drawn = [
            plot_ratios(results, args.img_dir / "ratios.png"),
            plot_scaling(results, args.img_dir / "scaling.png"),
        ]
        plots = [p for p in drawn if p]
    if args.md_out is not None:
        args.md_out.parent.mkdir(parents=True, exist_ok=True)
        args.md_out.write_text(markdown_(plots=plots, md_path=args.md_out))
    written = ", ".join(str(p) for p in (args.md_out, *plots) if p is not None)
    print("docs: " + (written or "none (a partial run writes them only with --md-out / --img-dir)"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.compare:
        print(compare(load_json(args.compare[0]), load_json(args.compare[1])))
        return 0
    if args.profile:
        from benchmarks.profiling import profile

        profile(args.profile, args.n, args.top)
        return 0
    selected = REGISTRY.select(quick=args.quick, only=args.only)
    extra_names = select_extras(args.quick, args.only)
    if args.list:
        lines = [c.id + ("" if c.in_quick else "  (full only)") for c in selected]
        lines += [f"{e}  (extra{'' if EXTRAS[e][1] else ', full only'})" for e in extra_names]
        print("\n".join(lines))
        return 0
    if not selected and not extra_names:
        print(f"no case matches {args.only!r}; see --list", file=sys.stderr)
        return 2
    env = environment()
    began = time.monotonic()
    results = asyncio.run(run_all(selected, quick=args.quick))
    extras = asyncio.run(run_extras(extra_names, args.quick))
    extras["peak_rss_mb"] = peak_rss_mb()
    extras["rss_mb_end"] = rss_mb()
    extras["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    extras["seconds"] = round(time.monotonic() - began, 1)
    extras["only"] = args.only  # a partial run says which cases it ran
    extras["run_token"] = RUN_TOKEN  # in every Redis prefix / PostgreSQL schema this run made
    command = "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:])
    write_outputs(args, results, extras, env, command.strip())
    print(f"done in {extras['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

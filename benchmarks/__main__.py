"""``python -m benchmarks``: run the cases, print them, write the results JSON, docs and plots.

python -m benchmarks                 # full run (< 20 min), rewrites docs/benchmarks.md
python -m benchmarks --quick         # small N and fewer repeats, for CI (< 2 min)
python -m benchmarks --only save     # cases whose id contains "save" (or a glob: '*load*2 KB*')
python -m benchmarks --list          # the registered cases
python -m benchmarks --compare OLD.json NEW.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import cases  # noqa: F401  (registers the cases)
from benchmarks.harness import REGISTRY, RUN_TOKEN, CaseResult, run_all
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N, fewer repeats, quick subset")
    parser.add_argument("--only", metavar="PATTERN", help="substring or glob of case ids to run")
    parser.add_argument("--json-out", type=Path, default=ROOT / "benchmarks/results/latest.json")
    parser.add_argument("--md-out", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs/img")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("OLD", "NEW"),
        help="print per-case changes between two results files and exit",
    )
    return parser.parse_args(argv)


LEARNING_SIZES = {"quick": (100, 30), "full": (1000, 200)}
"""(from-scratch runs, incremental runs): incremental learning runs at ~10 runs/s, so it gets
fewer runs than the from-scratch relearn to keep the full run within its 20 minutes."""


async def learning_extras(quick: bool) -> dict[str, Any]:
    """Figures from benchmarks/learning.py (another engineer's), if that module exists."""
    try:
        from benchmarks import learning  # type: ignore[attr-defined]
    except ImportError:
        return {}
    scratch, incremental = LEARNING_SIZES["quick" if quick else "full"]
    note = (
        f"Learning on `memory://`: incremental = one `learn` call per run over {incremental:,} runs; "
        f"from scratch = one `relearn` over {scratch:,} stored runs (same synthetic workload)."
    )
    try:
        return {"note": note, **await learning.bench_learning(scratch, incremental_runs=incremental)}
    except Exception as exc:  # a broken optional module must not sink the whole run
        return {"error": f"{type(exc).__name__}: {exc}"}


async def memory_extras() -> dict[str, Any]:
    """Peak RSS of list_runs of 10,000 runs and a 50 MB blob round trip (benchmarks/memory.py)."""
    from benchmarks.memory import bench_memory

    try:
        return await bench_memory()
    except Exception as exc:  # a broken scenario must not sink the whole run
        return {"error": f"{type(exc).__name__}: {exc}"}


def write_outputs(
    args: argparse.Namespace,
    results: list[CaseResult],
    extras: dict[str, Any],
    env: dict[str, Any],
    command: str,
) -> None:
    mode = "quick" if args.quick else "full"
    save_json(args.json_out, env, results, mode, extras)
    print(f"results: {args.json_out}")
    if args.no_docs:
        return
    drawn = [
        plot_ratios(results, args.img_dir / "ratios.png"),
        plot_scaling(results, args.img_dir / "scaling.png"),
    ]
    plots = [p for p in drawn if p]
    args.md_out.parent.mkdir(parents=True, exist_ok=True)
    args.md_out.write_text(
        markdown(env, results, mode=mode, command=command, extras=extras, plots=plots, md_path=args.md_out)
    )
    print(f"docs: {args.md_out}" + "".join(f", {p}" for p in plots))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.compare:
        print(compare(load_json(args.compare[0]), load_json(args.compare[1])))
        return 0
    selected = REGISTRY.select(quick=args.quick, only=args.only)
    if args.list:
        print("\n".join(c.id + ("" if c.in_quick else "  (full only)") for c in selected))
        return 0
    if not selected:
        print(f"no case matches {args.only!r}; see --list", file=sys.stderr)
        return 2
    env = environment()
    began = time.monotonic()
    results = asyncio.run(run_all(selected, quick=args.quick))
    extras: dict[str, Any] = {"learning": asyncio.run(learning_extras(args.quick))} if not args.only else {}
    if not args.quick and not args.only:
        extras["memory"] = asyncio.run(memory_extras())
    extras["peak_rss_mb"] = peak_rss_mb()
    extras["rss_mb_end"] = rss_mb()
    extras["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    extras["seconds"] = round(time.monotonic() - began, 1)
    extras["run_token"] = RUN_TOKEN  # in every Redis prefix / PostgreSQL schema this run made
    command = "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:])
    write_outputs(args, results, extras, env, command.strip())
    print(f"done in {extras['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

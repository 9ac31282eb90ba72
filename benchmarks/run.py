"""Run the benchmarks and print one JSON summary.

    .venv/bin/python -m benchmarks.run [--quick] [--only NAME ...] [--json out.json] [--strict]

Each benchmark runs in its own Python process, so one's memory and threads never colour another's
figures (the peak RSS of the throughput run is that process's own). Targets come from the product
issue; a missed target is reported, and fails the run only with --strict, because timings on a
shared machine move with its load (recorded before and after each benchmark).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Target, loadavg, machine

BENCHMARKS = ("intake", "overhead", "throughput", "storage", "memory", "likeness", "workers")
# "memory" is the peak RSS of the throughput run: both come from the same process.
_SOURCE = {"intake": "intake", "overhead": "overhead", "throughput": "throughput", "storage": "storage",
           "memory": "throughput", "likeness": "likeness",
           "workers": "workers"}
DESCRIPTIONS = {
    "intake": "12 MP phone JPEG (EXIF 6) -> 1024 px model-ready JPEG via core.intake.prepare, vs naive Pillow",
    "overhead": "photo update fetched -> sendPhoto arrives, real PTB adapter + loopback Bot API, instant engine",
    "throughput": "500 people, 2 s engine, concurrency 64, studio + job runner: total vs ideal, loop lag, fairness",
    "storage": "reply lookup and node insert through SqliteStore with 10k / 100k / 1M nodes stored",
    "memory": "peak RSS of the process during the throughput run",
    "likeness": "face likeness (dlib): time per score at 1024 px, loop lag while the pool scores, every offline style",
    "workers": "one PostgreSQL: claims/s with 8 workers (instant engine), claim p99; 500 jobs, 2 s engine, "
               "1/2/4 worker processes vs ideal",
}
CHILD_TIMEOUT_S = {"intake": 300, "overhead": 300, "throughput": 300, "storage": 900, "likeness": 300,
                   "workers": 600}


def _runner(source: str) -> Callable[[bool], dict[str, Any]]:
    if source == "intake":
        from benchmarks import intake_bench
        return intake_bench.run
    if source == "overhead":
        from benchmarks import telegram_bench
        return telegram_bench.run
    if source == "throughput":
        from benchmarks import throughput_bench
        return throughput_bench.run
    if source == "storage":
        from benchmarks import storage_bench
        return storage_bench.run
    if source == "likeness":
        from benchmarks import likeness_bench
        return likeness_bench.run
    if source == "workers":
        from benchmarks import workers_bench
        return workers_bench.run
    raise ValueError(source)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Target):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_child(source: str, quick: bool) -> None:
    """In the child process: run one benchmark and write its raw result as JSON on stdout."""
    result = _runner(source)(quick)
    sys.stdout.write(json.dumps(_jsonable(result)) + "\n")


def _spawn(source: str, quick: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.run", "--child", source] + (["--quick"] if quick else [])
    load_before = loadavg()
    began = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S[source] * (0.3 if quick else 1))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S[source]} s", "loadavg_before": load_before}
    seconds = round(time.perf_counter() - began, 2)
    meta = {"seconds": seconds, "loadavg_before": load_before, "loadavg_after": loadavg()}
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return {"error": f"exit status {done.returncode}: {tail}", **meta}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": "no result on stdout", **meta}
    return {**json.loads(lines[-1]), **meta}


def _entry(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """One benchmark's section of the summary."""
    entry: dict[str, Any] = {"description": DESCRIPTIONS[name]}
    meta: dict[str, Any] = {k: raw[k] for k in ("seconds", "loadavg_before", "loadavg_after") if k in raw}
    if "error" in raw:
        return {**entry, "ok": False, "error": raw["error"], "targets": [], "figures": {}, **meta}
    if name == "memory":
        figures, targets = raw["memory"], raw["memory_targets"]
    else:
        figures, targets = raw["figures"], raw["targets"]
    return {**entry, "ok": True, "all_targets_met": all(t["met"] for t in targets), "targets": targets,
            "figures": figures, **meta}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the suite works, in seconds")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the summary to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", choices=sorted(set(_SOURCE.values())), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.quick)
        return 0

    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    started = dt.datetime.now(dt.UTC)
    summary: dict[str, Any] = {
        "suite": "pixme benchmarks", "quick": args.quick,
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine(),
        "command": " ".join([".venv/bin/python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        "loadavg_start": loadavg(), "benchmarks": {},
    }
    raw: dict[str, dict[str, Any]] = {}
    for name in names:
        source = _SOURCE[name]
        if source not in raw:
            print(f"running {source}{' (quick)' if args.quick else ''}…", file=sys.stderr, flush=True)
            raw[source] = _spawn(source, args.quick)
        summary["benchmarks"][name] = _entry(name, raw[source])
    summary["loadavg_end"] = loadavg()
    entries = summary["benchmarks"].values()
    summary["all_ran"] = all(e["ok"] for e in entries)
    summary["all_targets_met"] = all(e.get("all_targets_met", False) for e in entries)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    if not summary["all_ran"]:
        return 2
    return 1 if args.strict and not summary["all_targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())

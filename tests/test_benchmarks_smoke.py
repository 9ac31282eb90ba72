"""The benchmark suite still runs: its quick mode yields a well-formed summary naming every benchmark.

Timings are never asserted here (CI machines vary); BENCHMARKS.md holds the measured figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import BENCHMARKS

# Real processes or long runs, seconds each: `python3 manage.py test --fast` leaves them out.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_reports_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(out.read_text(encoding="utf-8"))
    assert json.loads(done.stdout) == summary, "stdout carries the same JSON summary"
    assert summary["quick"] is True and summary["all_ran"] is True
    assert summary["machine"]["nproc"] >= 1 and summary["machine"]["python"]
    assert len(summary["loadavg_start"]) == 3
    assert set(summary["benchmarks"]) == set(BENCHMARKS)
    for name, entry in summary["benchmarks"].items():
        assert entry["ok"], f"{name}: {entry.get('error')}"
        assert entry["figures"], name
        assert entry["targets"], name
        for target in entry["targets"]:
            assert {"name", "value", "limit", "unit", "rule", "met"} <= set(target), (name, target)
            assert isinstance(target["value"], int | float) and isinstance(target["met"], bool), (name, target)

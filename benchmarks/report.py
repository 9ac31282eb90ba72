"""Render a JSON summary from `benchmarks.run --json` as the Markdown tables used in BENCHMARKS.md.

    .venv/bin/python -m benchmarks.report out.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _value(target: dict[str, Any]) -> str:
    value = target["value"]
    return f"{value:g}" if isinstance(value, int) else f"{value:.3g}" if abs(value) >= 100 else f"{value:.2f}"


def markdown(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    lines = [
        f"Run {summary['date']} · {m['nproc']} × {m['cpu']} · Python {m['python']} · "
        f"load average at start {' '.join(str(x) for x in summary['loadavg_start'])}"
        f"{' · QUICK MODE' if summary['quick'] else ''}",
        "",
        "| Benchmark | Target | Measured | Met | Load avg (1/5/15 min) before |",
        "|---|---|---|---|---|",
    ]
    for name, entry in summary["benchmarks"].items():
        load = " ".join(str(x) for x in entry.get("loadavg_before", []))
        if not entry["ok"]:
            lines.append(f"| {name} | — | error: {entry['error'].splitlines()[0]} | — | {load} |")
            continue
        for target in entry["targets"]:
            rule = "≤" if target["rule"] == "<=" else "≥"
            lines.append(f"| {name} | {target['name']} {rule} {target['limit']:g} {target['unit']} | "
                         f"{_value(target)} {target['unit']} | {'yes' if target['met'] else '**no**'} | {load} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(markdown(json.loads(Path(args[0]).read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

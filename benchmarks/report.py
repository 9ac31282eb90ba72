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
    lines += _likeness_table(summary["benchmarks"].get("likeness"))
    return "\n".join(lines)


def _likeness_table(entry: dict[str, Any] | None) -> list[str]:
    """Likeness of every offline style on every test portrait (percent; "—" where no face was found)."""
    if not entry or not entry.get("ok"):
        return []
    figures = entry["figures"]
    table: dict[str, dict[str, int | None]] = figures["per_style_percent"]
    people = list(next(iter(table.values()), {}))
    lines = ["", "Likeness by offline style (%; — no face found):", "",
             "| Style | " + " | ".join(people) + " | mean | no face |",
             "|---|" + "---|" * (len(people) + 2)]
    for style, row in table.items():
        cells = " | ".join("—" if row[p] is None else str(row[p]) for p in people)
        mean = figures["per_style_mean_percent"][style]
        lines.append(f"| {style} | {cells} | {'—' if mean is None else mean} | "
                     f"{figures['per_style_no_face'][style]} |")
    known, cold = figures["score_1024_known_selfie"], figures["score_1024_both_pictures"]
    lines += ["", f"Time per score at 1024 px: p50 {known['p50_ms']:.0f} ms, p90 {known['p90_ms']:.0f} ms with the "
              f"selfie's embedding known (fastest {figures['score_1024_known_selfie_fastest_ms']:.0f} ms); "
              f"{cold['p50_ms']:.0f} ms p50 with both pictures worked on; "
              f"group picture with six members {figures['group_960px_six_members_ms']:.0f} ms; "
              f"model load {figures['model_load_ms']:.0f} ms. Event-loop lag p99 "
              f"{figures['lag_idle_p99_ms']:.1f} ms idle, {figures['lag_while_scoring_p99_ms']:.1f} ms while the "
              f"pool scores (wall time per score through the pool p50 {figures['pool_wall_per_score']['p50_ms']:.0f} "
              f"ms, two at once). Same photo re-encoded ≥ {figures['same_photo_reencoded_min_percent']}%, another "
              f"photo of the same person {figures['other_photo_same_person_percent']}%, different people ≤ "
              f"{figures['different_people_max_percent']}% ({figures['different_people_pairs']} pairs)."]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(markdown(json.loads(Path(args[0]).read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
